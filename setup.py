"""Setuptools shim: Beam's --setup_file needs a setup.py to ship this code to Dataflow workers.

All metadata lives in pyproject.toml; Dataflow workers install the stack from requirements.txt
(pass --requirements_file requirements.txt, or use a custom container).
"""
import setuptools

setuptools.setup()

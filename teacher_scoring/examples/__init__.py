"""Text -> segments -> masked examples: tokenization, documents, segmentation, masking."""

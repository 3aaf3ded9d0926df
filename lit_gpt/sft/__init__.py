"""Supervised fine-tuning on chat data: templates, data, the fine-tuning job and chat inference."""

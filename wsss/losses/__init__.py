"""Training losses that several stages share: OCR (out-of-candidate rectification), W-OoD metric learning."""

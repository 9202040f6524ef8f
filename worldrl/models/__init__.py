"""Video models: quantizers, tokenizers (uint8 video <-> integer codes) and predictors."""

"""The trained demo set: a tiny SD1.5-format model family trained on scikit-learn's digits.

Modules: data (the pictures and prompts), text (prompt embeddings through ComfyUI's own CLIP),
vae (a TAESD-format autoencoder), unet (the SD1.5-format UNet and its LoRAs), train (the whole,
deterministic training run), judges (readers of digit/position/colour from a picture), provenance,
install (copy the set into a ComfyUI's models/ folders). See docs/demo-set.md.
"""

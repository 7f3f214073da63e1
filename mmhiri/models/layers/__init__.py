"""The one home of the blocks shared by HIRI-ViT, ViTAE and ViTAEv2."""

"""Tiny widths of each family, with the real models' stages, block types and strides: for
checks of wiring rather than of numbers (the test suite, ``tools/gpu_check.py --tiny``)."""
TINY_HIRI = dict(channels=[8, 16, 16, 32, 32], depths=[1, 1, 1, 1, 1], expansions=[2, 2, 2, 2, 2],
                 num_heads=[None, None, None, 2, 2],
                 block_types=['hr', 'hr', 'cffn', 'transformer', 'transformer'],
                 stem_channels=8, irds_a_expansion=2, irds_b_expansion=2)
TINY_V2 = dict(embed_dims=[8, 8, 16, 32], token_dims=[8, 16, 32, 64], depths=[1, 1, 2, 1],
               rc_heads=[1, 1, 2, 4], nc_heads=[1, 2, 4, 8], strides=[4, 2, 2, 2],
               kernel_sizes=[7, 3, 3, 3], dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2], [1, 2]],
               attn_types=['window', 'window', 'transformer', 'transformer'], mlp_ratio=4.,
               rc_groups=[1, 2, 4, 8], nc_groups=[1, 4, 8, 16])
TINY_V1 = dict(embed_dims=[8, 8, 16], token_dims=[8, 8, 32], depths=[0, 0, 2], nc_heads=[1, 1, 4],
               strides=[4, 2, 2], kernel_sizes=[7, 3, 3], dilations=[[1, 2, 3, 4], [1, 2, 3], [1, 2]],
               rc_types=['performer', 'performer', None], rc_groups=[1, 1, 1], nc_groups=[1, 1, 8],
               mlp_ratio=2.)
TINY_ARCHS = {'HIRIViT': TINY_HIRI, 'ViTAEv2': TINY_V2, 'ViTAE': TINY_V1}


def tiny_backbone(name: str, **kwargs):
    """``name`` ('HIRIViT', 'ViTAEv2' or 'ViTAE') at its tiny widths."""
    from . import HIRIViT, ViTAE, ViTAEv2
    cls = {'HIRIViT': HIRIViT, 'ViTAEv2': ViTAEv2, 'ViTAE': ViTAE}[name]
    return cls(TINY_ARCHS[name], **kwargs)

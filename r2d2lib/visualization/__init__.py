"""Pictures of what a trained model does: entity-conditioned cross-attention heatmaps (Fig. 2 of the
paper) and grids of search results."""
from .attention import EntityAttention, entity_attention, entity_token_positions, upsample_to
from .grid import find_cjk_font, result_grid
from .heatmap import overlay_heatmap

__all__ = ['EntityAttention', 'entity_attention', 'entity_token_positions', 'find_cjk_font',
           'overlay_heatmap', 'result_grid', 'upsample_to']

"""titans-dna: Titans long-context DNA language models.

Neural long-term memory, attention as short-term memory, and persistent memory.
"""

from titans_dna.models import TitansConfig, TitansLM
from titans_dna.ops.memory import MemoryState, neural_memory
from titans_dna.tokenizer import DNATokenizer

__all__ = ["DNATokenizer", "MemoryState", "TitansConfig", "TitansLM", "neural_memory"]

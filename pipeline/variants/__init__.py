"""Variant-effect scores from a VCF: the log-likelihood ratio of the alternative haplotype over the
reference one, on both strands, with long left context from one streamed pass per contig.

Score. A variant, left-aligned and trimmed (`alleles.normalize`), replaces REF (a bases at 0-based
position p) by ALT (b bases). On the forward strand the model reads the genome up to p (the
left context), then a window of the haplotype: for the reference the a REF bases and the next
W bases of the genome, for the alternative the b ALT bases and the same W genome bases. With
ℓ(x_t) = log p(x_t | x_<t),

    LLR_fwd = Σ_{t in alt window} ℓ(alt_t) − Σ_{t in ref window} ℓ(ref_t)

Both windows end at the same genome base, so insertions and deletions are compared over the
same stretch of sequence however long the alleles. The reverse strand is the mirror: the
reverse complement of both haplotypes, left context the genome after the variant, windows the
alleles and the W genome bases before them. LLR = (LLR_fwd + LLR_rev) / 2. Targets that are N
are left out of both sums; at a contig's ends the windows and the context stop at the end. As
the score is computed from the left-aligned form, equivalent descriptions of one haplotype
(normalized or not) get the same score.

`scoring` computes it from snapshots of one streamed pass (or independent windows, the
baseline), `records` reads and checks the VCF, `output` writes the annotated VCF and TSV.
"""

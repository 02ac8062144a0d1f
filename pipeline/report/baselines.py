"""Reference numbers for the shared GUE tasks, keyed by task identity: the sha256 of the train,
dev and test files (data/MANIFEST.tsv). A task gets them only when all three of its splits are
byte for byte those files, whatever its folder is called; a user's own task gets none."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """Test-set numbers measured or published for one task."""

    name: str
    kmer_mcc: float  # 3-6-mer counts + logistic regression (scikit-learn, C=0.1), measured here
    kmer_auroc: float
    dnabert2_mcc: float  # fine-tuned DNABERT-2 (117M): Zhou et al., ICLR 2024, GUE table


# (train, dev, test) sha256 -> reference numbers
REFERENCES = {
    (
        "a36e0bbf2b59e01479bb904534d310041b493fec9221ccd74b518893d74054ed",
        "98dd5d2b5df3c93cad9fa0a4a36078d28fa95b7bf9ab73fb2e5ba1fa74877f2b",
        "b1babbb52abd0fb5328eccc4ce8ab60d0a58d28bdc88c30f8e2140cf1684ce0c",
    ): Reference("GUE prom_core_all", 0.562, 0.860, 0.6937),
    (
        "d0dd45bad89aee2564b8831d38a393989942d79b673203e7eb50e19ec8e6242e",
        "4de0f8163d964e4004f0a11036d9a9c5ec6fe2ad5953f962acf66150a2f44592",
        "30432e9845277559043c2bb3bfed37b9bc7efc15748880f3adeeaddc16b76deb",
    ): Reference("GUE prom_300_tata", 0.393, 0.749, 0.7159),
    (
        "930080e019fb92961cbd71998839466c2fc4c34da8fc174999a2ed04ef46822f",
        "17ff638046d146102a86b727adc9ddead9f1f1793577a38961e1f3319da7f738",
        "d29934d0df424a91ef70f6a62671d9d1c4661b485d7010983b49c8bcfba6aeab",
    ): Reference("GUE tf_0", 0.627, 0.884, 0.7199),
    (
        "29dc3c962cc4e4d7161238bb4d0b84583f7794b246a622f81bf30e83e3ae8685",
        "fbffd591300e9ef192d131c139322cbe8e3fb87fae4f52236f64588d3975b8d1",
        "8995d9d9176d56aa6e3a7014dfcf61ad45bc25a59fba1faca9864250ce42008a",
    ): Reference("GUE tf_1", 0.665, 0.920, 0.7606),
    (
        "6f507b130c5a94c63f4a36748da66579cd682a34f7296ab08e4805ee75091a35",
        "f44e2d3e29a778364d329cfef046deccdfb484c12af6dde7f04b7de8bcb8bf9a",
        "e2c54b74410f1d263f9dcba371f0d50b5f207960673e385cd4b95989e3e6d6be",
    ): Reference("GUE mouse_0", 0.546, 0.848, 0.5676),
}


def reference_for(task_files: dict | None) -> Reference | None:
    """The reference numbers of a fine-tuning run's task (its metrics.json `task_files`), or
    None when its splits are not exactly a known task's."""
    if not task_files:
        return None
    try:
        key = tuple(task_files[split]["sha256"] for split in ("train", "dev", "test"))
    except KeyError:
        return None
    return REFERENCES.get(key)

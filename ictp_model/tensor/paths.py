"""Enumeration of irreducible product paths (l1, l2) -> l3."""

Path = tuple[int, int, int]


def product_paths(l1_max: int, l2_max: int, l3_max: int, odd: bool = False, symmetric: bool = False) -> list[Path]:
    """All paths l1 ⊗ l2 -> l3 with l1 <= l1_max, l2 <= l2_max, l3 <= l3_max.

    Args:
        odd: also return the Levi-Civita (parity-flipping) paths, l1 + l2 - l3 odd.
        symmetric: for a product of a tensor with itself, keep only l1 >= l2; for even paths
            (l1, l2) and (l2, l1) give the same result there, so nothing is lost.  Odd paths of
            x ⊗ x with l1 == l2 vanish identically and are dropped too.

    Returns:
        Paths sorted by (l3, l1, l2).
    """
    paths: list[Path] = []
    for l1 in range(l1_max + 1):
        for l2 in range(l2_max + 1):
            if symmetric and l1 < l2:
                continue
            for l3 in range(abs(l1 - l2), min(l1 + l2, l3_max) + 1):
                is_odd = (l1 + l2 - l3) % 2 == 1
                if is_odd and (not odd or (symmetric and l1 == l2)):
                    continue
                paths.append((l1, l2, l3))
    return sorted(paths, key=lambda p: (p[2], p[0], p[1]))

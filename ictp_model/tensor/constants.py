"""Integer combinatorics and the normalisation constants of the ICT algebra.

All functions are TorchScript-compatible (plain ``int``/``float`` arithmetic) so that the
scripted model can call them; none of them allocates tensors.
"""


def factorial(n: int) -> int:
    """n! for n >= 0."""
    out = 1
    for i in range(2, n + 1):
        out *= i
    return out


def double_factorial(n: int) -> int:
    """n!! with the convention (-1)!! = 0!! = 1."""
    out = 1
    i = n
    while i > 1:
        out *= i
        i -= 2
    return out


def harmonic_constant(l: int) -> float:
    """C_l = (2l-1)!!/l!, the factor making T_l(n) contracted l times with n equal to 1."""
    return double_factorial(2 * l - 1) / factorial(l)


def num_placements(l: int, m: int) -> int:
    """Number of distinct placements of m Kronecker deltas among l indices,
    l!/(2^m m! (l-2m)!) = l!/((2m)!! (l-2m)!)."""
    return factorial(l) // (double_factorial(2 * m) * factorial(l - 2 * m))


def even_product_constant(l1: int, l2: int, l3: int) -> float:
    """C_{l1 l2 l3} of the even irreducible product (docs/math.md §1.2).

    With this constant, (T_l1(n) ⊗ T_l2(n))_l3 = T_l3(n) for every unit vector n, when the
    symmetrisation is the *sum* over distinct permutations.
    """
    j = l1 + l2 + l3
    num = (
        factorial(l1)
        * factorial(l2)
        * double_factorial(2 * l3 - 1)
        * factorial((l2 + l3 - l1) // 2)
        * factorial((l1 + l3 - l2) // 2)
    )
    den = (
        factorial(l3)
        * double_factorial(l2 + l3 - l1 - 1)
        * double_factorial(l1 + l3 - l2 - 1)
        * double_factorial(l1 + l2 - l3 - 1)
        * factorial(j // 2)
    )
    return num / den


def symmetrization_multiplicity(l1: int, l2: int, l3: int) -> int:
    """N = l3!/((l1-k)!(l2-k)!): ratio of the sum over distinct permutations to their average
    for the even path with k = (l1+l2-l3)/2 contractions."""
    k = (l1 + l2 - l3) // 2
    return factorial(l3) // (factorial(l1 - k) * factorial(l2 - k))


def pow3(n: int) -> int:
    """3**n as an int (TorchScript evaluates ``3 ** n`` as a float)."""
    out = 1
    for _ in range(n):
        out *= 3
    return out

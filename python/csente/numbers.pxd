# Numbers as the JVM writes and reads them, shared by the edn and transit codecs.
#
# Inline functions over the caller's char buffer: a .pxd with no .pyx, so each codec compiles its own copy
# and there is no extra module (or call) between them. Writing: a long's decimal digits, and Java's
# Double.toString (shortest round-trip digits, plain notation for 1e-3 <= |d| < 1e7, else d.dddE[-]x).
# Reading: the digit scanner and the exact fast path for short decimals (Clinger's: at most 15
# significant digits and a power of ten up to 22).

from libc.math cimport fabs, signbit
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

cdef extern from "Python.h":
    char* PyOS_double_to_string(double, char, int, int, int*) except NULL
    void PyMem_Free(void*) noexcept

cdef extern from *:
    """
    /* every power of ten up to 1e22 is a double exactly; the compiler rounds each literal correctly */
    static const double csente_pow10[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    """
    const double POW10 "csente_pow10"[23]

cdef enum:
    LONG_MAX_TEXT = 20     # the longest text write_long writes: "-9223372036854775808"
    JAVA_DOUBLE_MAX = 32   # the longest java_double writes, "-" 17 digits "." "E-324", with room to spare


cdef inline char* _digits_before(unsigned long long u, char* end) noexcept:
    """Writes the decimal digits of ``u`` so that they end just before ``end``; where they start."""
    while True:
        end -= 1
        end[0] = <char>(48 + u % 10)
        u //= 10
        if u == 0:
            return end


cdef inline int write_long(long long v, char* out) noexcept:
    """The decimal text of ``v`` into ``out`` (LONG_MAX_TEXT bytes); its length."""
    cdef char tmp[LONG_MAX_TEXT]
    cdef char* start
    if v < 0:
        start = _digits_before(0 - <unsigned long long>v, tmp + LONG_MAX_TEXT) - 1  # right for -2**63 too
        start[0] = b'-'
    else:
        start = _digits_before(<unsigned long long>v, tmp + LONG_MAX_TEXT)
    memcpy(out, start, tmp + LONG_MAX_TEXT - start)
    return <int>(tmp + LONG_MAX_TEXT - start)


cdef inline int _short_decimal(double v, char* out) noexcept:
    """Plain notation for 1e-3 <= |v| < 1e7 with a short decimal form, or 0 when there is none.

    The fewest fraction digits k such that m / 10**k is v again (an exact m over an exact power of ten
    divides correctly rounded, as a parser would). While v * 10**k < 2**50 the round-trip interval holds
    at most one integer, so this is the shortest form, the one repr and Java find.
    """
    cdef double a = fabs(v), x, m
    cdef int k, nd, o = 0
    cdef char buf[LONG_MAX_TEXT]
    cdef char* digits
    for k in range(16):
        x = a * POW10[k]
        if x >= 1125899906842624.0:  # 2**50
            return 0
        m = <double>(<long long>(x + 0.5))
        if m / POW10[k] == a:
            break
    else:
        return 0
    digits = _digits_before(<unsigned long long>m, buf + LONG_MAX_TEXT)
    nd = <int>(buf + LONG_MAX_TEXT - digits)
    if v < 0:
        out[o] = b'-'
        o += 1
    if nd <= k:  # 0.00ddd
        out[o] = b'0'
        out[o + 1] = b'.'
        o += 2
        memset(out + o, b'0', k - nd)
        o += k - nd
        memcpy(out + o, digits, nd)
        return o + nd
    memcpy(out + o, digits, nd - k)  # ddd.ddd or ddd.0
    o += nd - k
    out[o] = b'.'
    if k == 0:
        out[o + 1] = b'0'
        return o + 2
    memcpy(out + o + 1, digits + nd - k, k)
    return o + 1 + k


cdef inline int java_double(double v, char* out) except -1:
    """Java's Double.toString of a finite ``v`` into ``out`` (JAVA_DOUBLE_MAX bytes); its length.

    1.0, -0.0, 0.001, 1234567.0, 1.0E7, 1.0E-5, 1.7976931348623157E308: shortest round-trip digits.
    """
    cdef char* r
    cdef char digits[32]
    cdef int nd = 0, point = 0, exp = 0, k = 0, j, lead = 0
    cdef bint seen_point = False, neg_exp = False
    if v == 0:
        if signbit(v):
            memcpy(out, b"-0.0", 4)
            return 4
        memcpy(out, b"0.0", 3)
        return 3
    if 1e-3 <= fabs(v) < 1e7:
        k = _short_decimal(v, out)
        if k:
            return k
    r = PyOS_double_to_string(v, b'r', 0, 0, NULL)
    j = 1 if r[0] == b'-' else 0
    while r[j] != 0 and r[j] != b'e':
        if r[j] == b'.':
            seen_point = True
        elif nd < 32:
            digits[nd] = r[j]
            nd += 1
            if not seen_point:
                point += 1
        j += 1
    if r[j] == b'e':
        j += 1
        neg_exp = r[j] == b'-'
        if r[j] == b'-' or r[j] == b'+':
            j += 1
        while r[j] != 0:
            exp = exp * 10 + (r[j] - 48)
            j += 1
    PyMem_Free(r)
    point += -exp if neg_exp else exp
    while lead < nd and digits[lead] == b'0':  # value = 0.DIGITS * 10**point
        lead += 1
        point -= 1
    while nd > lead and digits[nd - 1] == b'0':
        nd -= 1
    k = 0
    if v < 0:
        out[k] = b'-'
        k += 1
    if -2 <= point <= 7:  # 1e-3 <= |v| < 1e7: plain notation
        if point <= 0:
            out[k] = b'0'
            out[k + 1] = b'.'
            k += 2
            for j in range(-point):
                out[k] = b'0'
                k += 1
            for j in range(lead, nd):
                out[k] = digits[j]
                k += 1
        else:
            for j in range(point):
                out[k] = digits[lead + j] if lead + j < nd else b'0'
                k += 1
            out[k] = b'.'
            k += 1
            if lead + point >= nd:
                out[k] = b'0'
                k += 1
            for j in range(lead + point, nd):
                out[k] = digits[j]
                k += 1
        return k
    out[k] = digits[lead]
    out[k + 1] = b'.'
    k += 2
    if nd - lead == 1:
        out[k] = b'0'
        k += 1
    for j in range(lead + 1, nd):
        out[k] = digits[j]
        k += 1
    out[k] = b'E'
    return k + 1 + write_long(point - 1, out + k + 1)


cdef inline Py_ssize_t scan_digits(const unsigned char* s, Py_ssize_t i, Py_ssize_t n, uint64_t* mant,
                                   int* sig) noexcept:
    """Reads the ASCII digits from s[i] on into ``*mant`` (its first 19 significant digits; ``*sig`` counts
    every significant one, leading zeros are none); the index after the last digit."""
    cdef uint64_t m = mant[0]
    cdef int g = sig[0]
    cdef unsigned int d
    while i < n:
        d = s[i] - 48u
        if d > 9:
            break
        if g < 19:
            m = m * 10 + d
            g += m != 0
        else:
            g += 1
        i += 1
    mant[0] = m
    sig[0] = g
    return i


cdef inline bint exact_double(uint64_t mant, int sig, int e10, double* out) noexcept:
    """``mant * 10**e10`` into ``*out`` when one IEEE operation gets it exactly (both operands exact: at
    most 15 significant digits, |e10| <= 22), rounded as a full parser would; False when not."""
    if sig > 15 or not -22 <= e10 <= 22:
        return False
    out[0] = <double>mant * POW10[e10] if e10 >= 0 else <double>mant / POW10[-e10]
    return True

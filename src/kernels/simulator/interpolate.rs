//! Tricubic ("polin3") interpolation of structure factors between grid points.
//!
//! It is 4-point Lagrange interpolation, not a spline: on each axis the nodes are
//! `x_0..x_3 = floor(x)-1 .. floor(x)+2` and
//! `y(x) = sum_i y_i prod_{j != i} (x - x_j)/(x_i - x_j)`. The 4x4x4 neighbourhood is
//! reduced by 16 one-dimensional interpolations along `l`, then 4 along `k`, then 1
//! along `h`. Because each step is exact for cubics, the result reproduces any
//! polynomial of degree at most 3 in each of `h`, `k`, `l`.
//!
//! [`polin3`] is the reference form (the formula as written, with the node values as
//! doubles). [`tricubic_weighted`] is the fast form: with `t = x - floor(x)` the nodes
//! sit at `t + 1, t, t - 1, t - 2` from `x`, so the four weights
//! ([`lagrange_weights`]) are `-t(t-1)(t-2)/6`, `(t+1)(t-1)(t-2)/2`, `-(t+1)t(t-2)/2`,
//! `(t+1)t(t-1)/6`, and the interpolant is `sum_ijm w_h,i w_k,j w_l,m F_ijm`, summed
//! along `k`, then `h`, then `l`: the same number up to rounding.

use super::hkl::HklGrid;

/// One-dimensional 4-point Lagrange interpolation through `(nodes[i], values[i])` at `x`.
pub fn polint(nodes: &[f64; 4], values: &[f64; 4], x: f64) -> f64 {
    let term_0 = (x - nodes[1]) * (x - nodes[2]) * (x - nodes[3]) * values[0]
        / ((nodes[0] - nodes[1]) * (nodes[0] - nodes[2]) * (nodes[0] - nodes[3]));
    let term_1 = (x - nodes[0]) * (x - nodes[2]) * (x - nodes[3]) * values[1]
        / ((nodes[1] - nodes[0]) * (nodes[1] - nodes[2]) * (nodes[1] - nodes[3]));
    let term_2 = (x - nodes[0]) * (x - nodes[1]) * (x - nodes[3]) * values[2]
        / ((nodes[2] - nodes[0]) * (nodes[2] - nodes[1]) * (nodes[2] - nodes[3]));
    let term_3 = (x - nodes[0]) * (x - nodes[1]) * (x - nodes[2]) * values[3]
        / ((nodes[3] - nodes[0]) * (nodes[3] - nodes[1]) * (nodes[3] - nodes[2]));
    term_0 + term_1 + term_2 + term_3
}

/// Two-dimensional interpolation: along the second axis for each row, then along the first.
pub fn polin2(nodes_1: &[f64; 4], nodes_2: &[f64; 4], values: &[[f64; 4]; 4], x_1: f64, x_2: f64) -> f64 {
    let reduced = values.map(|row| polint(nodes_2, &row, x_2));
    polint(nodes_1, &reduced, x_1)
}

/// Three-dimensional interpolation: [`polin2`] over the last two axes for each plane,
/// then along the first.
pub fn polin3(nodes: [&[f64; 4]; 3], values: &[[[f64; 4]; 4]; 4], x: [f64; 3]) -> f64 {
    let reduced = values.map(|plane| polin2(nodes[1], nodes[2], &plane, x[1], x[2]));
    polint(nodes[0], &reduced, x[0])
}

/// Whether `(h, k, l)` has the full 4x4x4 neighbourhood inside the grid: interpolation is
/// refused when `h < h_min + 2` or `h > h_max - 2` (same for `k`, `l`).
pub fn in_range(grid: &HklGrid, h: f64, k: f64, l: f64) -> bool {
    !(h - f64::from(grid.h_min) + 3.0 > grid.h_range() as f64
        || h - 2.0 < f64::from(grid.h_min)
        || k - f64::from(grid.k_min) + 3.0 > grid.k_range() as f64
        || k - 2.0 < f64::from(grid.k_min)
        || l - f64::from(grid.l_min) + 3.0 > grid.l_range() as f64
        || l - 2.0 < f64::from(grid.l_min))
}

/// The reference interpolation at fractional `(h, k, l)` (which must be [`in_range`]).
pub fn tricubic_reference(grid: &HklGrid, h: f64, k: f64, l: f64) -> f64 {
    let floors = [h.floor() as i32, k.floor() as i32, l.floor() as i32];
    let nodes = floors.map(|floor| [floor - 1, floor, floor + 1, floor + 2]);
    let node_values = nodes.map(|axis| axis.map(f64::from));
    let mut values = [[[0.0; 4]; 4]; 4];
    for (i_h, plane) in values.iter_mut().enumerate() {
        for (i_k, row) in plane.iter_mut().enumerate() {
            for (i_l, value) in row.iter_mut().enumerate() {
                *value = grid.get(nodes[0][i_h], nodes[1][i_k], nodes[2][i_l]);
            }
        }
    }
    polin3([&node_values[0], &node_values[1], &node_values[2]], &values, [h, k, l])
}

/// The four Lagrange weights for the nodes `floor(x)-1 .. floor(x)+2`, given
/// `t = x - floor(x)`.
#[inline(always)]
pub fn lagrange_weights(t: f64) -> [f64; 4] {
    let t_plus_1 = t + 1.0;
    let t_minus_1 = t - 1.0;
    let t_minus_2 = t - 2.0;
    [
        t * t_minus_1 * t_minus_2 * (-1.0 / 6.0),
        t_plus_1 * t_minus_1 * t_minus_2 * 0.5,
        t_plus_1 * t * t_minus_2 * -0.5,
        t_plus_1 * t * t_minus_1 * (1.0 / 6.0),
    ]
}

/// The fast interpolation: `values` is the grid's flat array, `corner` the position of
/// `(floor(h)-1, floor(k)-1, floor(l)-1)` in it, and the weights come from
/// [`lagrange_weights`]. The runs of 4 contiguous values along `l` are reduced along
/// `k` (four independent 4-vectors, one per `h` node), then along `h`, then weighted
/// along `l`: the 4-vectors are SIMD registers, the dependency chains stay short, and
/// only one horizontal sum remains. This is another summation order than the
/// reference's, so results agree to rounding.
#[inline(always)]
pub fn tricubic_weighted(
    values: &[f64],
    corner: usize,
    k_stride: usize,
    h_stride: usize,
    weights: [[f64; 4]; 3],
) -> f64 {
    let [weights_h, weights_k, weights_l] = weights;
    let mut along_k = [[0.0; 4]; 4];
    for (i_h, reduced) in along_k.iter_mut().enumerate() {
        for (i_k, weight_k) in weights_k.iter().enumerate() {
            let start = corner + i_h * h_stride + i_k * k_stride;
            let run: &[f64; 4] = values[start..start + 4].try_into().expect("four contiguous values");
            for (sum, value) in reduced.iter_mut().zip(run) {
                *sum += weight_k * value;
            }
        }
    }
    let mut along_h = [0.0; 4];
    for (reduced, weight_h) in along_k.iter().zip(weights_h) {
        for (sum, value) in along_h.iter_mut().zip(reduced) {
            *sum += weight_h * value;
        }
    }
    along_h[0] * weights_l[0] + along_h[1] * weights_l[1] + along_h[2] * weights_l[2] + along_h[3] * weights_l[3]
}

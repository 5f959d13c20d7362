//! Finite-difference gradient checks of every tape op except attention (tests/attention.rs),
//! in f64: |analytic − numeric| ≤ 1e-6 + 1e-5·|numeric| with central differences, h = 1e-5.

mod common;
use common::*;
use pasa::backend::{Activation, Dropout, Gemm, KernelKind, MixShape};

const H: f64 = 1e-5;

fn check(
    what: &str,
    shapes: &[(&str, &[usize])],
    build: &dyn Fn(&mut pasa::tape::Tape<B64>, &[usize]) -> usize,
) {
    let (ps, init) = random_params(shapes, 7);
    let rep = gradcheck(&ps, &init, 11, H, 400, build);
    assert_grad_ok(what, &ps, &rep);
}

#[test]
fn matmul_every_transpose_and_batched() {
    let (m, n, k) = (3, 5, 4);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let sa: &[usize] = if ta { &[k, m] } else { &[m, k] };
        let sb: &[usize] = if tb { &[n, k] } else { &[k, n] };
        check(
            &format!("matmul ta={ta} tb={tb}"),
            &[("a", sa), ("b", sb)],
            &|t, p| t.matmul(p[0], p[1], Gemm::new(m, n, k, ta, tb)),
        );
        let ba: Vec<usize> = [&[2usize][..], sa].concat();
        let bb: Vec<usize> = [&[2usize][..], sb].concat();
        check(
            &format!("batched matmul ta={ta} tb={tb}"),
            &[("a", &ba), ("b", &bb)],
            &|t, p| {
                t.matmul(
                    p[0],
                    p[1],
                    Gemm::new(m, n, k, ta, tb).batched(2, m * k, k * n, m * n),
                )
            },
        );
    }
}

#[test]
fn linear_bias_and_residual() {
    check(
        "linear",
        &[("x", &[7, 3]), ("w", &[3, 5]), ("b", &[5])],
        &|t, p| t.linear(p[0], p[1], Some(p[2])),
    );
    // Broadcast over the batch, as for the position embedding; in place on an op's output.
    check(
        "add_bias over [2, 3·4]",
        &[("x", &[6, 4]), ("pe", &[3, 4])],
        &|t, p| {
            let x = t.residual(None, p[0], Dropout::NONE, None);
            t.add_bias(x, p[1])
        },
    );
    check("residual", &[("a", &[4, 3]), ("b", &[4, 3])], &|t, p| {
        t.residual(Some(p[0]), p[1], DROP, None)
    });
}

const DROP: Dropout = Dropout { p: 0.3, seed: 99 };

#[test]
fn linear_many_batched_and_not() {
    // Weights and biases interleaved as the models lay them out (evenly spaced): one batched
    // product whose outputs are slices of one tensor; the gradient of a slice nothing used
    // stays zero.
    let shapes: &[(&str, &[usize])] = &[
        ("x", &[6, 4]),
        ("w0", &[4, 3]),
        ("b0", &[3]),
        ("w1", &[4, 3]),
        ("b1", &[3]),
        ("w2", &[4, 3]),
        ("b2", &[3]),
    ];
    check("linear_many, evenly spaced", shapes, &|t, p| {
        let ys = t.linear_many(p[0], &[p[1], p[3], p[5]], Some(&[p[2], p[4], p[6]]));
        let a = t.residual(Some(ys[0]), ys[2], DROP, None);
        t.residual(Some(a), ys[0], Dropout::NONE, None)
    });
    // Not evenly spaced (the biases first): one linear each.
    let apart: &[(&str, &[usize])] = &[
        ("x", &[6, 4]),
        ("b0", &[3]),
        ("b1", &[3]),
        ("w0", &[4, 3]),
        ("w1", &[4, 3]),
    ];
    check("linear_many, apart", apart, &|t, p| {
        let ys = t.linear_many(p[0], &[p[3], p[4]], Some(&[p[1], p[2]]));
        t.residual(Some(ys[0]), ys[1], Dropout::NONE, None)
    });
}

#[test]
fn layernorm() {
    check(
        "layernorm",
        &[("x", &[5, 7]), ("g", &[7]), ("b", &[7])],
        &|t, p| t.layernorm(p[0], p[1], p[2]),
    );
    // Gamma and beta apart in the parameters, and x with a gradient already (the residual
    // stream): both backward paths of the tape.
    check(
        "layernorm, x used twice",
        &[("g", &[7]), ("x", &[5, 7]), ("b", &[7])],
        &|t, p| {
            let x = t.residual(None, p[1], Dropout::NONE, None);
            let y = t.layernorm(x, p[0], p[2]);
            t.residual(Some(x), y, Dropout::NONE, None)
        },
    );
}

#[test]
fn activations_with_dropout() {
    // N(0,1) inputs: a ReLU kink within h = 1e-5 of a sample has probability ~1e-5.
    for d in [Dropout::NONE, DROP] {
        check("relu", &[("x", &[6, 5])], &|t, p| {
            t.act(Activation::Relu, p[0], d)
        });
        check("gelu", &[("x", &[6, 5])], &|t, p| {
            t.act(Activation::Gelu, p[0], d)
        });
    }
}

#[test]
fn residual_dropout_and_row_masks() {
    check("dropout", &[("x", &[6, 5])], &|t, p| {
        t.residual(None, p[0], DROP, None)
    });
    // A partly and a fully padded window.
    check("row mask", &[("x", &[2 * 4, 3])], &|t, p| {
        let start = t.ints(&[1, 4]);
        t.residual(None, p[0], Dropout::NONE, Some((start, 4)))
    });
    for n in [1, 7, 33] {
        check(
            &format!("masked residual n {n}"),
            &[("x", &[3 * n, 5]), ("o", &[3 * n, 5])],
            &|t, p| {
                let start = t.ints(&[0, (n / 2) as u32, n as u32]);
                t.residual(Some(p[0]), p[1], DROP, Some((start, n)))
            },
        );
    }
}

#[test]
fn rope_odd_head_width() {
    check("rope", &[("x", &[2 * 5, 2 * 5])], &|t, p| {
        t.rope(p[0], 5, 2, 5)
    });
}

#[test]
fn embedding_with_repeats_and_padding() {
    check("embedding", &[("table", &[6, 4])], &|t, p| {
        let ids = t.ints(&[0, 3, 3, 5, 1]);
        t.embedding(p[0], ids, 5, 1.7)
    });
}

/// The fused classifier loss through h and the table: rows without a target (gathered and
/// scattered), every row with one (no gather) and none (loss 0, no gradient), chunks of 1
/// row, of 2 (not dividing the 3 or 5 rows with a target), of all of them, and the default.
#[test]
fn classifier_cross_entropy_chunked_with_ignored_rows() {
    for targets in [[2u32, 0, 6, 1, 0], [2, 3, 6, 1, 6], [0; 5]] {
        for chunk in [Some(1), Some(2), Some(5), None] {
            check(
                &format!("classifier_cross_entropy targets {targets:?} chunk {chunk:?}"),
                &[("h", &[5, 3]), ("table", &[7, 3])],
                &|t, p| t.classifier_cross_entropy(p[0], p[1], &targets, chunk),
            );
        }
    }
}

#[test]
fn bce_with_sampled_negatives() {
    check("bce", &[("h", &[5, 3]), ("table", &[7, 3])], &|t, p| {
        let tg = t.ints(&[2, 0, 6, 1, 2]);
        t.bce(p[0], p[1], tg, 4, 1234)
    });
}

#[test]
fn mix_all_kernels() {
    for kind in [KernelKind::Full, KernelKind::Toeplitz] {
        for (heads, l_heads) in [(1, 1), (2, 1), (2, 2)] {
            let (batch, n, dh) = (2, 5, 3);
            let s = MixShape {
                batch,
                n,
                heads,
                dh,
                l: kind,
                l_heads,
            };
            check(
                &format!("mix {kind:?} heads {heads} l_heads {l_heads}"),
                &[
                    ("l", &[l_heads, kind.len(n)]),
                    ("v", &[batch * n, heads * dh]),
                ],
                &|t, p| {
                    let start = t.ints(&[0, 2]);
                    t.mix(s, p[0], p[1], start)
                },
            );
        }
    }
}

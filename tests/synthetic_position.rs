//! The built-in synthetic dataset rewards position: a model with a positional kernel beats
//! the same model with no position signal at all by a wide margin.

use pasa::backend::cpu::Cpu;
use pasa::config::TrainConfig;
use pasa::data::Split;
use pasa::models::Preset;
use pasa::run::RunDir;
use pasa::train::train;

fn test_ndcg10(model: Preset, pos_emb: bool) -> f64 {
    let mut c = TrainConfig::for_model(model);
    c.model.pos_emb = pos_emb;
    (c.model.d, c.model.d_ff, c.model.n, c.model.blocks) = (16, 16, 30, 1);
    (c.epochs, c.batch, c.patience, c.optim.lr) = (10, 64, 0, 1e-2);
    (c.data.synthetic.users, c.data.synthetic.items) = (600, 100);
    let seqs = c.data.load().unwrap();
    c.model.items = seqs.num_items;
    let dir = std::env::temp_dir().join(format!(
        "pasa-synth-{}-{model}-{pos_emb}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let split = Split::new(&seqs).unwrap();
    let out = train(&Cpu::<f32>::new(), &c, &split, &RunDir(dir.clone()), None).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out.test.get("ndcg", 10).unwrap()
}

#[test]
fn a_positional_kernel_beats_no_position_signal() {
    let none = test_ndcg10(Preset::Sasrec, false);
    let kernel = test_ndcg10(Preset::Pasa, false);
    eprintln!("test NDCG@10 (full ranking): no position signal {none:.4}, pasa {kernel:.4}");
    // Measured 0.27 vs 0.47; the bound leaves room for platform rounding differences.
    assert!(kernel > none + 0.1, "pasa {kernel} vs no position {none}");
}

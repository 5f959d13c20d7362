//! Compiles `kernels/*.cu` to PTX with nvcc and embeds the text in the crate
//! (`$OUT_DIR/kernels.rs`, included by `pasa::kernels`).
//!
//! nvcc is `NVCC`, else `$CUDA_HOME/bin/nvcc`, else `nvcc` on `PATH`. Without one the build
//! still succeeds with an empty kernel list and a warning (the CUDA backend then reports a clear
//! error at run time); with `PASA_REQUIRE_KERNELS=1` (CI) a missing nvcc or a kernel that does
//! not compile fails the build with nvcc's messages. `PASA_CUDA_ARCH` picks the target
//! (default `sm_90`, the H100).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DEFAULT_ARCH: &str = "sm_90";

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernel_dir = Path::new("kernels");

    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "PASA_CUDA_ARCH",
        "PASA_REQUIRE_KERNELS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let require = env::var("PASA_REQUIRE_KERNELS").is_ok_and(|v| !v.is_empty() && v != "0");
    let arch = env::var("PASA_CUDA_ARCH")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_ARCH.to_string());

    let mut sources: Vec<PathBuf> = fs::read_dir(kernel_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .collect()
        })
        .unwrap_or_default();
    sources.sort();
    for s in &sources {
        println!("cargo:rerun-if-changed={}", s.display());
    }

    let mut built: Vec<(String, PathBuf)> = Vec::new();
    match find_nvcc() {
        Err(why) => {
            if require {
                fail(&format!(
                    "PASA_REQUIRE_KERNELS is set but no usable nvcc: {why}. \
                     Install one with `export NVCC=$(.ci/install-nvcc | tail -1)`."
                ));
            }
            println!(
                "cargo:warning=CUDA kernels were not built ({why}); the CUDA backend will be \
                 unavailable. Set NVCC (e.g. `export NVCC=$(.ci/install-nvcc | tail -1)`)."
            );
        }
        Ok(nvcc) => {
            // Start every nvcc at once (attention.cu alone takes tens of seconds), then collect.
            let jobs: Vec<_> = sources
                .iter()
                .map(|src| {
                    let name = src.file_stem().unwrap().to_string_lossy().into_owned();
                    let ptx = out_dir.join(format!("{name}.ptx"));
                    let child = nvcc_command(&nvcc, &arch, src, &ptx).spawn();
                    (name, src.clone(), ptx, child)
                })
                .collect();
            let mut failures = Vec::new();
            for (name, src, ptx, child) in jobs {
                let result = child.and_then(|c| c.wait_with_output());
                match result {
                    Ok(out) if out.status.success() && ptx.exists() => built.push((name, ptx)),
                    Ok(out) => failures.push(format!(
                        "{} failed to compile ({}):\n{}",
                        src.display(),
                        out.status,
                        messages(&out)
                    )),
                    Err(e) => failures.push(format!("{}: cannot run nvcc: {e}", src.display())),
                }
            }
            if !failures.is_empty() {
                if require {
                    fail(&failures.join("\n"));
                }
                for f in &failures {
                    // cargo shows one warning per line; keep the first lines of each report.
                    for line in f.lines().take(20) {
                        println!("cargo:warning={line}");
                    }
                }
                println!("cargo:warning=the kernels above are left out of the build");
            }
        }
    }

    // Tests that need the kernels are ignored (not passed) in a build without them.
    println!("cargo::rustc-check-cfg=cfg(pasa_no_kernels)");
    if built.is_empty() {
        println!("cargo::rustc-cfg=pasa_no_kernels");
    }

    let mut rs = String::new();
    rs.push_str("/// PTX target the kernels were compiled for.\n");
    rs.push_str(&format!("pub const ARCH: &str = {arch:?};\n"));
    rs.push_str(
        "/// (file stem, zlib-compressed PTX text) of every compiled `kernels/*.cu`; empty \
         without nvcc.\n",
    );
    rs.push_str("pub const KERNELS: &[(&str, &[u8])] = &[\n");
    for (name, ptx) in &built {
        let packed = compress(ptx);
        let path = packed.to_string_lossy();
        rs.push_str(&format!("    ({name:?}, include_bytes!({path:?})),\n"));
    }
    rs.push_str("];\n");
    fs::write(out_dir.join("kernels.rs"), rs).expect("write kernels.rs");
}

/// Compress `ptx` with zlib next to it (`<file>.z`). PTX text is verbose: the three
/// attention modules alone are about 30 MB, 5 MB compressed, and every binary that links the
/// crate carries the kernels (the GPU check's pack holds three).
fn compress(ptx: &Path) -> PathBuf {
    use flate2::{write::ZlibEncoder, Compression};
    use std::io::Write;
    let text = fs::read(ptx).unwrap_or_else(|e| fail(&format!("reading {}: {e}", ptx.display())));
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    let packed = z
        .write_all(&text)
        .and_then(|()| z.finish())
        .unwrap_or_else(|e| fail(&format!("compressing {}: {e}", ptx.display())));
    let out = ptx.with_extension("ptx.z");
    fs::write(&out, packed).unwrap_or_else(|e| fail(&format!("writing {}: {e}", out.display())));
    out
}

/// The nvcc to use, checked by running `nvcc --version`.
fn find_nvcc() -> Result<PathBuf, String> {
    let candidate = if let Some(v) = env::var_os("NVCC").filter(|v| !v.is_empty()) {
        PathBuf::from(v)
    } else if let Some(home) = env::var_os("CUDA_HOME").filter(|v| !v.is_empty()) {
        PathBuf::from(home).join("bin").join("nvcc")
    } else {
        // Only here does PATH matter, so only here is a change of PATH a reason to rebuild.
        println!("cargo:rerun-if-env-changed=PATH");
        env::split_paths(&env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
            .ok_or_else(|| "nvcc not found (NVCC, CUDA_HOME and PATH tried)".to_string())?
    };
    match Command::new(&candidate).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(candidate),
        Ok(out) => Err(format!(
            "{} --version failed: {}",
            candidate.display(),
            messages(&out)
        )),
        Err(e) => Err(format!("cannot run {}: {e}", candidate.display())),
    }
}

fn nvcc_command(nvcc: &Path, arch: &str, src: &Path, ptx: &Path) -> Command {
    let mut cmd = Command::new(nvcc);
    cmd.arg("-ptx")
        .arg(format!("-arch={arch}"))
        // -O3 but no --use_fast_math: fast math swaps expf/logf/division/sqrt for approximate
        // versions and flushes denormals, and the CPU backend (IEEE f32) is the reference that
        // parity tests hold every kernel to. The kernels are memory- or latency-bound; the
        // accurate functions cost little.
        .arg("-O3")
        .arg("-std=c++17")
        .arg("-I")
        .arg("kernels")
        .arg("-o")
        .arg(ptx)
        .arg(src)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

fn messages(out: &Output) -> String {
    let mut s = String::from_utf8_lossy(&out.stderr).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stdout));
    s.trim_end().to_string()
}

/// Fail the build with a readable message (cargo prints a failed build script's stderr); an
/// exit status rather than a panic, so that no backtrace buries the nvcc output.
fn fail(msg: &str) -> ! {
    eprintln!("error: CUDA kernels are required (PASA_REQUIRE_KERNELS) but were not built");
    eprintln!("{msg}");
    std::process::exit(1);
}

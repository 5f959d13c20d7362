//! `pasa data …`: convert inputs to the binary format and print their statistics.

use std::path::{Path, PathBuf};

use super::{
    load_detected, overwrite, write_binary, Detected, Format, LoadOptions, Sequences, Stats,
};
use crate::error::{shown, Result};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DataCommand {
    /// Convert any supported input into the compact binary format.
    ///
    /// OUTPUT is written atomically (a temporary file in the same folder, renamed into place).
    /// It is never the input file itself (nor a link to it). An existing OUTPUT is replaced
    /// only when it is empty or a pasa binary file; any other file needs --force.
    Convert {
        /// Input file (pairs, one user per line, ratings.dat, u.data, ratings.csv or binary).
        input: PathBuf,
        /// Output binary file.
        output: PathBuf,
        /// Input format; auto detects it from the content.
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
        /// Keep only users and items with at least K interactions (iterated until stable).
        #[arg(long, value_name = "K")]
        kcore: Option<usize>,
        /// Number items by first appearance even when the input ids are already dense.
        #[arg(long)]
        renumber: bool,
        /// Replace OUTPUT even when it exists and is not a pasa binary file (never the input).
        #[arg(long)]
        force: bool,
    },
    /// Print user, item and interaction counts and the sequence-length distribution.
    Stats {
        file: PathBuf,
        /// Input format; auto detects it from the content.
        #[arg(long, value_enum, default_value_t = Format::Auto)]
        format: Format,
    },
}

pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Convert {
            input,
            output,
            format,
            kcore,
            renumber,
            force,
        } => {
            overwrite::check(&input, &output, force)?;
            let opts = LoadOptions {
                format,
                kcore,
                renumber,
            };
            let seqs = load_noting_format(&input, &opts)?;
            write_binary(&seqs, &output)?;
            println!(
                "{} -> {}: {} users, {} items, {} interactions",
                input.display(),
                output.display(),
                seqs.num_users(),
                seqs.num_items,
                seqs.num_interactions()
            );
        }
        DataCommand::Stats { file, format } => {
            let opts = LoadOptions {
                format,
                ..LoadOptions::default()
            };
            let seqs = load_noting_format(&file, &opts)?;
            print!("{}", Stats::of(&seqs));
        }
    }
    Ok(())
}

/// Loads `path`; when its text format was detected, says on stderr which one was assumed.
fn load_noting_format(path: &Path, opts: &LoadOptions) -> Result<Sequences> {
    let (seqs, detected) = load_detected(path, opts)?;
    if let Some(note) = detected.as_ref().and_then(|d| format_note(path, d)) {
        eprintln!("{note}");
    }
    Ok(seqs)
}

/// The one-line stderr note for a detected text format; none for a binary file, which is not
/// a guess.
pub fn format_note(path: &Path, detected: &Detected) -> Option<String> {
    (detected.format != Format::Binary).then(|| {
        format!(
            "note: {}: format auto-detected as {detected} (--format overrides)",
            shown(path)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::{temp_file, temp_path};
    use crate::data::{read_binary, Sequences};
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: DataCommand,
    }

    #[test]
    fn convert_then_stats() {
        let input = temp_file("in.dat", b"1::30::5::2\n1::20::5::1\n2::30::4::1\n");
        let output = temp_path("out.bin");
        let args = ["pasa", "convert", "--kcore", "1"];
        let mut argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        argv.push(input.display().to_string());
        argv.push(output.display().to_string());
        run(Cli::parse_from(&argv).cmd).unwrap();
        let s = read_binary(&output).unwrap();
        let mut want = Sequences::from_lists(&[vec![1, 2], vec![2]], 2);
        want.item_ids = vec![20, 30];
        assert_eq!(s, want);
        let stats = Cli::parse_from([
            "pasa",
            "stats",
            "--format",
            "binary",
            &output.to_string_lossy(),
        ]);
        run(stats.cmd).unwrap();
    }

    #[test]
    fn format_names_on_the_command_line() {
        use clap::ValueEnum;
        let names: Vec<String> = Format::value_variants()
            .iter()
            .map(|f| f.to_possible_value().unwrap().get_name().to_string())
            .collect();
        let want = [
            "auto", "pairs", "lines", "ml-dat", "u-data", "csv", "binary",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn format_help_is_plain_text() {
        use clap::ValueEnum;
        for f in Format::value_variants() {
            let v = f.to_possible_value().unwrap();
            let help = v.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(!help.is_empty(), "{f:?} has no help");
            let markup = ['`', '[', ']', '\\'];
            assert!(!help.contains(markup), "{f:?}: markup in {help:?}");
        }
    }

    #[test]
    fn detected_text_formats_get_a_note_binary_does_not() {
        let d = crate::data::detect(b"1 2\n1 3\n").unwrap();
        assert_eq!(
            format_note(Path::new("d.txt"), &d).unwrap(),
            "note: d.txt: format auto-detected as pairs: 2 of the first 2 lines have 2 fields \
             (--format overrides)"
        );
        let b = crate::data::detect(b"PASASEQ\0").unwrap();
        assert_eq!(format_note(Path::new("d.bin"), &b), None);
    }

    #[test]
    fn convert_refuses_to_overwrite_its_input() {
        let input = temp_file("in.txt", b"1 2\n1 3\n");
        let cmd = Cli::parse_from([
            "pasa",
            "convert",
            "--force",
            &input.to_string_lossy(),
            &input.to_string_lossy(),
        ]);
        assert!(run(cmd.cmd).unwrap_err().0.contains("the same file"));
        assert_eq!(std::fs::read(&input).unwrap(), b"1 2\n1 3\n");
    }

    #[test]
    fn errors_are_returned_not_printed() {
        let missing = temp_path("missing.txt");
        let cmd = DataCommand::Stats {
            file: missing.clone(),
            format: Format::Auto,
        };
        let e = run(cmd).unwrap_err().0;
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
    }
}

use clap::Parser;

fn main() {
    let cli = pasa::cli::Cli::parse();
    if let Err(e) = pasa::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

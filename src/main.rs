use clap::Parser;

fn main() {
    report_expected_panics();
    let cli = pasa::cli::Cli::parse();
    if let Err(e) = pasa::cli::run(cli) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

/// Two panics are not bugs and get no panic report. A closed stdout pipe ends the process
/// quietly. The CUDA backend panics on device failures (out of memory, a faulting kernel, a lost
/// device): there is no way to carry on, but the user should get the one-line error of every
/// other failure, with a hint where there is one, not a panic report. Checkpoints already
/// written are complete (they are renamed into place), so nothing finished is lost.
fn report_expected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `pasa … | head`: the reader left; end quietly, as a SIGPIPE would (128 + 13).
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        if !msg.starts_with("cuda: ") {
            return default(info);
        }
        let hint = if msg.contains("OUT_OF_MEMORY") {
            " (the GPU ran out of memory: lower --batch or --eval-batch; the catalogue logits \
             take batch·n·items·4 bytes, twice when training)"
        } else {
            ""
        };
        eprintln!("error: {msg}{hint}");
        // A sweep catches the panic of one run and goes on with the next.
        if !pasa::sweep::catching_panics() {
            std::process::exit(2);
        }
    }));
}

//! Streaming WordCount over a socket text stream: running counts as they
//! change, printed as `(word,count)` (prefixed `N> ` above parallelism 1).
//!
//! Start a server (`nc -lk 7777`), then
//! `cargo run --release -p sluice-examples --bin socket_wordcount -- --host localhost --port 7777 [-p N]`

use sluice::{ParameterTool, StreamExecutionEnvironment};
use sluice_examples::{run_main, running_word_counts};

/// mimalloc frees records allocated on another subtask's thread cheaply.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    run_main(|| {
        let params = ParameterTool::from_env()?;
        let host = params.get_or("host", "localhost").to_string();
        let port = params.get_int("port")?;
        let port = u16::try_from(port).map_err(|_| {
            anyhow::anyhow!("bad value '{port}' for parameter --port: expected a port number (1-65535)")
        })?;
        let env = StreamExecutionEnvironment::from_params(&params)?;
        running_word_counts(&env.socket_text_stream(&host, port)).print();
        env.execute("Socket WordCount")?;
        Ok(())
    })
}

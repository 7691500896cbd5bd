//! A byte stream on the terminal: what `j ... connect` commands do.

use crate::CliResult;

/// stdin to the stream, the stream to stdout; ends when the remote side ends.
pub async fn stdio<S>(stream: S) -> CliResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut stdin = tokio::io::stdin();
    let mut stdout = jumpstarter_core::out::async_stdout();
    let upload = async {
        let _ = tokio::io::copy(&mut stdin, &mut wr).await;
        let _ = wr.shutdown().await;
        std::future::pending::<()>().await
    };
    let download = async {
        let r = tokio::io::copy(&mut rd, &mut stdout).await;
        let _ = stdout.flush().await;
        r
    };
    tokio::select! {
        r = download => { r?; }
        _ = upload => {}
    }
    Ok(0)
}

//! Large test images and their digests.

use std::path::Path;

/// One gibibyte.
pub const GIB: usize = 1 << 30;

/// Writes a 1 GiB image (a pseudo-random 4 MiB block, 256 times, each with its index so no two
/// blocks are equal) and returns its sha256.
pub fn write_gib(path: &Path) -> String {
    use sha2::Digest;
    use std::io::Write;
    let mut block: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut sha = sha2::Sha256::new();
    for i in 0..(GIB / block.len()) {
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        f.write_all(&block).unwrap();
        sha.update(&block);
    }
    f.flush().unwrap();
    hex::encode(sha.finalize())
}

/// sha256 of a file, decoded with `e` first if given.
pub async fn sha256_of(path: &Path, e: Option<jumpstarter_core::Encoding>) -> (String, u64) {
    use sha2::Digest;
    let file = tokio::fs::File::open(path).await.unwrap();
    let mut r: std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>> = match e {
        Some(e) => jumpstarter_core::resource::encoding::decoder(e, file),
        None => Box::pin(file),
    };
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = tokio::io::AsyncReadExt::read(&mut r, &mut buf)
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        total += n as u64;
    }
    (hex::encode(sha.finalize()), total)
}

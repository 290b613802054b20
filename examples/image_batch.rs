//! A batch transformation of many in-memory "images" with a progress bar: the shape of most
//! real `Pool.map` programs (tqdm's `process_map(fn, images)`).
//!
//! Each image is a 256×256 grey-scale buffer; each task blurs it (3×3 box filter), stretches
//! its contrast and returns it with its mean brightness. Buffers travel as
//! `multiproc::pickle::Bytes`, the fast path for byte payloads.
//!
//! Run it with `cargo run --release -p multiproc-examples --bin image_batch`.

use multiproc::pickle::Bytes;
use multiproc::Pool;

const SIDE: usize = 256;
const IMAGES: usize = 400;

/// A deterministic test pattern, different for each `seed`.
fn make_image(seed: usize) -> Bytes {
    let mut state = (seed as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    Bytes(
        (0..SIDE * SIDE)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let (x, y) = (i % SIDE, i / SIDE);
                ((x + y + seed) % 128) as u8 + (state % 64) as u8
            })
            .collect(),
    )
}

/// Blur with a 3×3 box, stretch the contrast to 0..=255; the new image and its mean.
fn transform(img: Bytes) -> (Bytes, f64) {
    let src = &img.0;
    let mut blurred = vec![0u8; SIDE * SIDE];
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (mut sum, mut n) = (0u32, 0u32);
            for yy in y.saturating_sub(1)..=(y + 1).min(SIDE - 1) {
                for xx in x.saturating_sub(1)..=(x + 1).min(SIDE - 1) {
                    sum += u32::from(src[yy * SIDE + xx]);
                    n += 1;
                }
            }
            blurred[y * SIDE + x] = (sum / n) as u8;
        }
    }
    let lo = *blurred.iter().min().expect("non-empty");
    let hi = *blurred.iter().max().expect("non-empty");
    let span = u32::from(hi - lo).max(1);
    for p in blurred.iter_mut() {
        *p = (u32::from(*p - lo) * 255 / span) as u8;
    }
    let mean = blurred.iter().map(|&p| f64::from(p)).sum::<f64>() / blurred.len() as f64;
    (Bytes(blurred), mean)
}

#[multiproc::main]
fn main() -> Result<(), multiproc::PoolError> {
    let images: Vec<Bytes> = (0..IMAGES).map(make_image).collect();
    println!(
        "{IMAGES} images of {SIDE}x{SIDE} ({} MiB in all)",
        (IMAGES * SIDE * SIDE) >> 20
    );
    let pool = Pool::new(multiproc::cpu_count())?;
    let out = pool.map_with_bar(transform, images, Some(4), "transform")?;
    let means: Vec<f64> = out.iter().map(|(_, m)| *m).collect();
    let avg = means.iter().sum::<f64>() / means.len() as f64;
    let full_range = out
        .iter()
        .all(|(img, _)| img.0.contains(&0) && img.0.contains(&255));
    println!(
        "transformed {} images; mean brightness {avg:.1}; every image spans 0..=255: {full_range}",
        out.len()
    );
    Ok(())
}

//! Pillow's resampling (`Image.resize` with a filter, `libImaging/Resample.c`), reproduced to the
//! bit on 8-bit images: transformers' CLIP image processor resizes with Pillow, and vellum's
//! pixels must be the ones the model was trained and evaluated on. Written by hand because no
//! crate reproduces Pillow's arithmetic (the `image` crate's filters differ in support, rounding
//! and intermediate precision): per output pixel, filter weights over the input pixels within
//! the filter's support (scaled up when downscaling, which is Pillow's antialiasing), normalised
//! to sum 1, converted to fixed point with 22 fractional bits; a horizontal pass, then a vertical
//! pass, each rounding and clipping to 8 bits.

use std::f64::consts::PI;

/// Fractional bits of the fixed-point weights (Pillow's `PRECISION_BITS`, `32 − 8 − 2`).
const PRECISION_BITS: u32 = 22;

/// A Pillow resampling filter (the `resample` code of `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
    /// `Image.BILINEAR` (2): triangle, support 1.
    Bilinear,
    /// `Image.BICUBIC` (3): Keys cubic with a = −0.5, support 2 (CLIP's).
    Bicubic,
    /// `Image.BOX` (4): support 0.5.
    Box,
    /// `Image.HAMMING` (5): Hamming-windowed sinc, support 1.
    Hamming,
}

impl Filter {
    /// The filter of a Pillow resampling code; `None` for nearest (0), whose path differs, and
    /// unknown codes.
    pub fn from_pillow(code: u32) -> Option<Filter> {
        Some(match code {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                1.0
            } else {
                (x * PI).sin() / (x * PI)
            }
        }
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Per output pixel: the first input pixel and the fixed-point weights of the input pixels from
/// there (Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc`).
struct Coefficients {
    /// `(first input index, count)` per output index.
    bounds: Vec<(usize, usize)>,
    /// `out_size × ksize` weights.
    weights: Vec<i32>,
    ksize: usize,
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Coefficients {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) truncates toward zero; negative values are then clamped to 0 anyway.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let count = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(count) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        for (x, kx) in k.iter().enumerate().take(count) {
            let w = if ww != 0.0 { kx / ww } else { *kx };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            weights[xx * ksize + x] = if w < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin, count));
    }
    Coefficients {
        bounds,
        weights,
        ksize,
    }
}

/// Rounds a fixed-point sum (with its +0.5 already added) to 8 bits, clipping.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved 8-bit image (`channels` values per pixel, `w × h`) to `out_w × out_h`
/// exactly as Pillow's `Image.resize(size, resample=filter)` (no `box`, no `reducing_gap`).
pub fn resize(
    pixels: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    assert_eq!(pixels.len(), w * h * channels, "pixel buffer size");
    assert!(w > 0 && h > 0 && out_w > 0 && out_h > 0, "empty image");
    // Pillow ≥ 13 runs the vertical pass first when both passes run, the height shrinks and it
    // loses more than twice what the width loses (less work); the passes round to 8 bits in
    // between, so the order shows in the pixels. The same order here, by transposing.
    if out_w != w && out_h < h && (h - out_h) > 2 * w.saturating_sub(out_w) {
        let t = transpose(pixels, w, h, channels);
        let r = resize_horizontal_first(&t, h, w, channels, out_h, out_w, filter);
        return transpose(&r, out_h, out_w, channels);
    }
    resize_horizontal_first(pixels, w, h, channels, out_w, out_h, filter)
}

/// `pixels` (`w × h`, interleaved) with rows and columns swapped.
fn transpose(pixels: &[u8], w: usize, h: usize, channels: usize) -> Vec<u8> {
    let mut out = vec![0u8; pixels.len()];
    for y in 0..h {
        for x in 0..w {
            let (src, dst) = ((y * w + x) * channels, (x * h + y) * channels);
            out[dst..dst + channels].copy_from_slice(&pixels[src..src + channels]);
        }
    }
    out
}

/// Pillow's two passes, horizontal first.
fn resize_horizontal_first(
    pixels: &[u8],
    w: usize,
    h: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Filter,
) -> Vec<u8> {
    let half = 1i32 << (PRECISION_BITS - 1);
    let horizontal = coefficients(w, out_w, filter);
    let vertical = coefficients(h, out_h, filter);
    // Horizontal pass over the rows the vertical pass reads (Pillow's ybox_first..ybox_last).
    let (y0, y1) = if out_h != h {
        let first = vertical.bounds[0].0;
        let (ls, lc) = vertical.bounds[out_h - 1];
        (first, ls + lc)
    } else {
        (0, h)
    };
    let tmp: Vec<u8> = if out_w != w {
        let mut tmp = vec![0u8; (y1 - y0) * out_w * channels];
        for (ty, y) in (y0..y1).enumerate() {
            let row = &pixels[y * w * channels..(y + 1) * w * channels];
            for xx in 0..out_w {
                let (xmin, count) = horizontal.bounds[xx];
                let k = &horizontal.weights[xx * horizontal.ksize..][..count];
                for c in 0..channels {
                    let mut ss = half;
                    for (x, &kx) in k.iter().enumerate() {
                        ss += i32::from(row[(xmin + x) * channels + c]) * kx;
                    }
                    tmp[(ty * out_w + xx) * channels + c] = clip8(ss);
                }
            }
        }
        tmp
    } else {
        pixels[y0 * w * channels..y1 * w * channels].to_vec()
    };
    if out_h == h {
        return tmp;
    }
    let mut out = vec![0u8; out_w * out_h * channels];
    let stride = out_w * channels;
    for yy in 0..out_h {
        let (ymin, count) = vertical.bounds[yy];
        let k = &vertical.weights[yy * vertical.ksize..][..count];
        for i in 0..stride {
            let mut ss = half;
            for (y, &ky) in k.iter().enumerate() {
                ss += i32::from(tmp[(ymin - y0 + y) * stride + i]) * ky;
            }
            out[yy * stride + i] = clip8(ss);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy_and_constant_images_stay_constant() {
        let px: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize(&px, 5, 4, 3, 5, 4, Filter::Bicubic), px);
        let flat = vec![77u8; 31 * 17];
        for f in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Box,
            Filter::Hamming,
        ] {
            for (ow, oh) in [(7, 3), (64, 40), (31, 9)] {
                assert!(
                    resize(&flat, 31, 17, 1, ow, oh, f).iter().all(|&v| v == 77),
                    "{f:?}"
                );
            }
        }
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(300, 64), (13, 64), (97, 224), (64, 64)] {
            let c = coefficients(i, o, Filter::Bicubic);
            for xx in 0..o {
                let (_, n) = c.bounds[xx];
                let s: i64 = c.weights[xx * c.ksize..][..n]
                    .iter()
                    .map(|&w| w as i64)
                    .sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= n as i64,
                    "{i}->{o} at {xx}: {s}"
                );
            }
        }
    }
}

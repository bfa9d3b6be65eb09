//! Image inputs: decoding (PNG, JPEG, WebP, with EXIF orientation applied) and the CLIP image
//! processor of transformers with its Pillow backend — convert to RGB, resize the short side with
//! Pillow's filter ([`resample`], bit-exact), centre crop, rescale, normalise — configured by a
//! checkpoint's `preprocessor_config.json`.
//!
//! Decoding uses the `image` crate. PNG decoding is lossless and exact; JPEG decoders may differ
//! from Pillow's libjpeg(-turbo) by a level or two on some pixels (IDCT and chroma upsampling
//! differ), so JPEG inputs match Pillow's pixels within that, not to the bit. Conversions to RGB
//! follow Pillow's `convert("RGB")`: grayscale is replicated, alpha is dropped (not composited),
//! palettes are looked up; 16-bit images are scaled to 8 bits by rounding `v / 257` (Pillow keeps
//! the high byte of 16-bit colour and clips 16-bit grayscale), so they match Pillow only
//! within a level (colour) or not at all (16-bit grayscale).

pub mod resample;

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
pub use resample::Filter;

/// The largest intermediate image the processor makes (resized, before cropping): 64 million
/// pixels (192 MB).
pub const MAX_RESIZED_PIXELS: usize = 64 << 20;

/// An 8-bit RGB image, row-major, 3 values per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height × width × 3` values.
    pub pixels: Vec<u8>,
}

/// Decodes an image file (PNG, JPEG, WebP, GIF, BMP, recognised by content), applies its EXIF
/// orientation (as transformers' `load_image` does with `ImageOps.exif_transpose`) and converts
/// it to RGB. Errors name the file: missing, unreadable, truncated, or not an image.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, path)
}

/// [`load_image`] from bytes already read (`path` names them in errors).
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<RgbImage> {
    use image::ImageDecoder;
    let bad = |detail: String| Error::bad_input(path, "image", detail);
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if reader.format().is_none() {
        return Err(bad(
            "not an image vellum can decode (PNG, JPEG, WebP, GIF, BMP)".into(),
        ));
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder)
        .map_err(|e| bad(format!("cannot decode (truncated or damaged?): {e}")))?;
    img.apply_orientation(orientation);
    let rgb = img.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    if width == 0 || height == 0 {
        return Err(bad("the image has no pixels".into()));
    }
    Ok(RgbImage {
        width,
        height,
        pixels: rgb.into_raw(),
    })
}

/// A size in `preprocessor_config.json`: a number, or an object.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeSpec {
    Square(usize),
    Shortest { shortest_edge: usize },
    Exact { height: usize, width: usize },
}

/// The image processor of a checkpoint (`preprocessor_config.json`, transformers' key names;
/// missing keys take `CLIPImageProcessor`'s defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ImageProcessorConfig {
    /// Resize before cropping.
    pub do_resize: bool,
    size: SizeSpec,
    /// Pillow resampling filter code (3: bicubic).
    pub resample: u32,
    /// Centre crop after resizing.
    pub do_center_crop: bool,
    crop_size: SizeSpec,
    /// Multiply by `rescale_factor`.
    pub do_rescale: bool,
    /// The rescale factor (1/255).
    pub rescale_factor: f64,
    /// Subtract `image_mean`, divide by `image_std` (per channel).
    pub do_normalize: bool,
    /// Per-channel mean.
    pub image_mean: Vec<f32>,
    /// Per-channel standard deviation.
    pub image_std: Vec<f32>,
    /// Convert to RGB first (always done: the models take RGB).
    pub do_convert_rgb: bool,
}

impl Default for ImageProcessorConfig {
    // OpenAI's constants as its configs write them (they round to the f32 the JSON values parse to).
    #[allow(clippy::excessive_precision)]
    fn default() -> Self {
        ImageProcessorConfig {
            do_resize: true,
            size: SizeSpec::Shortest { shortest_edge: 224 },
            resample: 3,
            do_center_crop: true,
            crop_size: SizeSpec::Exact {
                height: 224,
                width: 224,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: vec![0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: vec![0.268_629_54, 0.261_302_58, 0.275_777_11],
            do_convert_rgb: true,
        }
    }
}

/// A configured image processor: RGB image → `[3, H, W]` float32 pixel values.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    config: ImageProcessorConfig,
    filter: Filter,
}

impl ImageProcessor {
    /// Checks a configuration (`source` names its file in errors).
    pub fn new(config: ImageProcessorConfig, source: &Path) -> Result<Self> {
        let bad = |detail: String| Error::bad_input(source, "image processor", detail);
        let filter = Filter::from_pillow(config.resample).ok_or_else(|| {
            bad(format!(
                "resample {} is not supported (1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)",
                config.resample
            ))
        })?;
        if config.image_mean.len() != 3 || config.image_std.len() != 3 {
            return Err(bad("image_mean and image_std need 3 values (RGB)".into()));
        }
        if config.image_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(bad("image_std values must be finite and non-zero".into()));
        }
        let zero = |s: &SizeSpec| match s {
            SizeSpec::Square(n) | SizeSpec::Shortest { shortest_edge: n } => *n == 0,
            SizeSpec::Exact { height, width } => *height == 0 || *width == 0,
        };
        if zero(&config.size) || zero(&config.crop_size) {
            return Err(bad("size and crop_size must be positive".into()));
        }
        Ok(ImageProcessor { config, filter })
    }

    /// Reads `preprocessor_config.json` of a model folder (CLIP's defaults if it is missing).
    pub fn from_file(path: &Path) -> Result<Self> {
        let config = if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::bad_input(path, "image processor", e.to_string()))?
        } else {
            ImageProcessorConfig::default()
        };
        Self::new(config, path)
    }

    /// The output's `(height, width)`.
    pub fn output_size(&self) -> Option<(usize, usize)> {
        if self.config.do_center_crop {
            Some(square_or(&self.config.crop_size))
        } else {
            match (&self.config.size, self.config.do_resize) {
                (SizeSpec::Exact { height, width }, true) => Some((*height, *width)),
                _ => None,
            }
        }
    }

    /// The pixels after resize and centre crop, before rescaling (`[3, H, W]`, as the reference
    /// processor's uint8 values): what parity tests compare bit for bit.
    pub fn resized_and_cropped(&self, img: &RgbImage) -> std::result::Result<RgbImage, String> {
        let c = &self.config;
        let mut img = img.clone();
        if c.do_resize {
            let (h, w) = match c.size {
                // transformers reads a bare number (OpenAI's configs: `"size": 224`) as the
                // shortest edge.
                SizeSpec::Shortest { shortest_edge } | SizeSpec::Square(shortest_edge) => {
                    // transformers' get_resize_output_image_size(default_to_square=False).
                    let (short, long) = if img.width <= img.height {
                        (img.width, img.height)
                    } else {
                        (img.height, img.width)
                    };
                    let new_long = (shortest_edge as f64 * long as f64 / short as f64) as usize;
                    if img.width <= img.height {
                        (new_long, shortest_edge)
                    } else {
                        (shortest_edge, new_long)
                    }
                }
                SizeSpec::Exact { height, width } => (height, width),
            };
            if (h, w) != (img.height, img.width) {
                if h.saturating_mul(w) > MAX_RESIZED_PIXELS {
                    return Err(format!(
                        "a {} × {} image resizes to {w} × {h} pixels before cropping (more than {MAX_RESIZED_PIXELS}): too thin for the processor",
                        img.width, img.height
                    ));
                }
                img = RgbImage {
                    pixels: resample::resize(
                        &img.pixels,
                        img.width,
                        img.height,
                        3,
                        w.max(1),
                        h.max(1),
                        self.filter,
                    ),
                    width: w.max(1),
                    height: h.max(1),
                };
            }
        }
        if c.do_center_crop {
            let (ch, cw) = square_or(&c.crop_size);
            img = center_crop(&img, ch, cw);
        }
        Ok(img)
    }

    /// Preprocesses an image into `[3, H, W]` float32 values (channels first), as the reference
    /// processor's `pixel_values`. An image so thin that its resized copy would exceed
    /// 64 million pixels is refused (`path` names it).
    pub fn preprocess(&self, img: &RgbImage, path: &Path) -> Result<Vec<f32>> {
        let img = self
            .resized_and_cropped(img)
            .map_err(|d| Error::bad_input(path, "image", d))?;
        let c = &self.config;
        let plane = img.width * img.height;
        let mut out = vec![0f32; 3 * plane];
        for (p, px) in img.pixels.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                // transformers: rescale in float64, cast to float32; normalise in float32.
                let mut v = if c.do_rescale {
                    (f64::from(px[ch]) * c.rescale_factor) as f32
                } else {
                    f32::from(px[ch])
                };
                if c.do_normalize {
                    v = (v - c.image_mean[ch]) / c.image_std[ch];
                }
                out[ch * plane + p] = v;
            }
        }
        Ok(out)
    }
}

fn square_or(s: &SizeSpec) -> (usize, usize) {
    match *s {
        SizeSpec::Square(n) | SizeSpec::Shortest { shortest_edge: n } => (n, n),
        SizeSpec::Exact { height, width } => (height, width),
    }
}

/// transformers' `center_crop`: offsets `(H − h) // 2`, `(W − w) // 2`; an image smaller than
/// the crop is padded with zeros, centred (offsets rounded up).
fn center_crop(img: &RgbImage, h: usize, w: usize) -> RgbImage {
    if img.height >= h && img.width >= w {
        let (top, left) = ((img.height - h) / 2, (img.width - w) / 2);
        let mut pixels = Vec::with_capacity(h * w * 3);
        for y in top..top + h {
            pixels.extend_from_slice(&img.pixels[(y * img.width + left) * 3..][..w * 3]);
        }
        return RgbImage {
            width: w,
            height: h,
            pixels,
        };
    }
    // Pad to at least the crop size, then crop.
    let (nh, nw) = (h.max(img.height), w.max(img.width));
    let (pt, pl) = ((nh - img.height).div_ceil(2), (nw - img.width).div_ceil(2));
    let mut padded = vec![0u8; nh * nw * 3];
    for y in 0..img.height {
        padded[((y + pt) * nw + pl) * 3..][..img.width * 3]
            .copy_from_slice(&img.pixels[y * img.width * 3..][..img.width * 3]);
    }
    center_crop(
        &RgbImage {
            width: nw,
            height: nh,
            pixels: padded,
        },
        h,
        w,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(config: serde_json::Value) -> ImageProcessor {
        ImageProcessor::new(serde_json::from_value(config).unwrap(), Path::new("t")).unwrap()
    }

    /// OpenAI's configs write `"size": 224, "crop_size": 224`: the shortest edge, as transformers
    /// reads it, not a square resize.
    #[test]
    fn a_bare_number_size_is_the_shortest_edge() {
        let img = RgbImage {
            width: 90,
            height: 40,
            pixels: (0..90 * 40 * 3).map(|i| (i * 7 % 251) as u8).collect(),
        };
        let bare = processor(serde_json::json!({"size": 20, "crop_size": 20}));
        let object = processor(serde_json::json!({
            "size": {"shortest_edge": 20}, "crop_size": {"height": 20, "width": 20}
        }));
        let (a, b) = (
            bare.resized_and_cropped(&img).unwrap(),
            object.resized_and_cropped(&img).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!((a.width, a.height), (20, 20));
        assert_eq!(bare.output_size(), Some((20, 20)));
    }

    #[test]
    fn images_too_thin_to_resize_are_refused() {
        let img = RgbImage {
            width: 1,
            height: 100_000,
            pixels: vec![0; 300_000],
        };
        let p = processor(serde_json::json!({"size": 224, "crop_size": 224}));
        let err = p.preprocess(&img, Path::new("thin.png")).unwrap_err();
        assert!(err.to_string().contains("thin.png"), "{err}");
    }
}

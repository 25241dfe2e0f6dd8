/*
 * DINO's 8-bit augmentation kernels for WebAssembly (SIMD128): the inner loops of runtime/data/image-ops.ts's byte
 * operations, the same integer and float32 / float64 arithmetic, so the same bytes as Pillow 9.4 (the fixtures of
 * test/runtime/data/augment-fidelity.test.ts check both implementations). The JS side (runtime/data/wasm-kernels.ts)
 * computes coefficients and tables, lays every array out in this module's memory and passes byte offsets.
 *
 * Built by `node --import tsx tools/build-wasm.ts` (Debian: `apt-get install clang lld`); the .wasm is committed, so
 * installing the package needs no compiler. No libc: freestanding C, exported functions only.
 */
#include <wasm_simd128.h>

typedef unsigned char u8;
typedef int i32;
typedef unsigned int u32;

#define EXPORT(name) __attribute__((export_name(#name)))

/* ---- Resampling: Pillow's Resample.c, 8 bits per channel ------------------------------------------------------
 * Coefficients have 22 fractional bits; each pass rounds (+2^21), shifts and clips to 0..255. Sums stay below
 * 2^31 (255 times the positive weights, about 1.1 x 2^22), so i32 lanes are exact. clamp(sum >> 22, 0, 255) equals
 * Pillow's clip8: a sum <= 0 shifts to <= 0, one >= 255 x 2^22 to >= 255; the saturating narrows do the clamp. */
#define RESAMPLE_BITS 22
#define RESAMPLE_HALF (1 << (RESAMPLE_BITS - 1))

static inline v128_t clip_narrow(v128_t a, v128_t b, v128_t c, v128_t d) {
  v128_t ab = wasm_i16x8_narrow_i32x4(wasm_i32x4_shr(a, RESAMPLE_BITS), wasm_i32x4_shr(b, RESAMPLE_BITS));
  v128_t cd = wasm_i16x8_narrow_i32x4(wasm_i32x4_shr(c, RESAMPLE_BITS), wasm_i32x4_shr(d, RESAMPLE_BITS));
  return wasm_u8x16_narrow_i16x8(ab, cd);
}

static inline u8 clip8(i32 sum) {
  return sum <= 0 ? 0 : sum >= (255 << RESAMPLE_BITS) ? 255 : (u8)(sum >> RESAMPLE_BITS);
}

/*
 * Horizontal pass. `lines` rows of `src` (row step `src_stride` bytes); output o of a row reads `taps` pixels from
 * pixel first[o], pixels `pixel_step` bytes apart, channels `src_plane` bytes apart; written channel-first at
 * dst + o * dst_step (dst_step -1 mirrors), rows `dst_stride` apart, channels `dst_plane` apart.
 * Interleaved RGB(A) sources (pixel_step == channels, 3 or 4): one pixel's channels share a vector, a tap is one
 * load and one multiply for every channel (reads up to 5 bytes past a pixel: the caller leaves slack).
 * Others (channel-first, gray): per channel, a row's taps are contiguous and weights are padded to a multiple of 8
 * with zeros (the caller's layout), so 8 taps are one load, two multiplies.
 */
EXPORT(resize_horizontal)
void resize_horizontal(const u8 *src, i32 src_stride, i32 src_plane, i32 lines, const i32 *first, const i32 *weights,
                       i32 taps, u8 *dst, i32 dst_step, i32 dst_stride, i32 dst_plane, i32 outputs, i32 channels,
                       i32 pixel_step) {
  if (pixel_step == channels && channels >= 3 && channels <= 4) {
    for (i32 o = 0; o < outputs; o++) {
      const i32 *w = weights + o * taps;
      const u8 *row = src + first[o] * pixel_step;
      u8 *out = dst + o * dst_step;
      for (i32 line = 0; line < lines; line++, row += src_stride, out += dst_stride) {
        v128_t sum = wasm_i32x4_splat(RESAMPLE_HALF);
        const u8 *p = row;
        for (i32 k = 0; k < taps; k++, p += pixel_step) {
          v128_t pixel = wasm_u32x4_extend_low_u16x8(wasm_u16x8_load8x8(p));
          sum = wasm_i32x4_add(sum, wasm_i32x4_mul(pixel, wasm_i32x4_splat(w[k])));
        }
        out[0] = clip8(wasm_i32x4_extract_lane(sum, 0));
        out[dst_plane] = clip8(wasm_i32x4_extract_lane(sum, 1));
        out[2 * dst_plane] = clip8(wasm_i32x4_extract_lane(sum, 2));
        if (channels == 4) out[3 * dst_plane] = clip8(wasm_i32x4_extract_lane(sum, 3));
      }
    }
    return;
  }
  /* taps is a multiple of 8 here (zero-padded weights). */
  for (i32 c = 0; c < channels; c++) {
    for (i32 o = 0; o < outputs; o++) {
      const i32 *w = weights + o * taps;
      const u8 *row = src + c * src_plane + first[o] * pixel_step;
      u8 *out = dst + c * dst_plane + o * dst_step;
      for (i32 line = 0; line < lines; line++, row += src_stride, out += dst_stride) {
        v128_t sum = wasm_i32x4_splat(0);
        if (pixel_step == 1) {
          for (i32 k = 0; k < taps; k += 8) {
            v128_t pixels = wasm_u16x8_load8x8(row + k);
            sum = wasm_i32x4_add(sum, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(pixels), wasm_v128_load(w + k)));
            sum = wasm_i32x4_add(sum, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(pixels), wasm_v128_load(w + k + 4)));
          }
        } else {
          i32 scalar = 0;
          for (i32 k = 0; k < taps; k++) scalar += row[k * pixel_step] * w[k];
          sum = wasm_i32x4_replace_lane(sum, 0, scalar);
        }
        i32 total = RESAMPLE_HALF + wasm_i32x4_extract_lane(sum, 0) + wasm_i32x4_extract_lane(sum, 1) +
                    wasm_i32x4_extract_lane(sum, 2) + wasm_i32x4_extract_lane(sum, 3);
        *out = clip8(total);
      }
    }
  }
}

/*
 * Vertical pass of one channel: output row y reads rows first[y] .. first[y] + taps - 1 of `src` (`width` bytes each),
 * all its outputs sharing one set of weights; written `width` apart from `dst`. 16 outputs per step, the last step
 * moved back to end at the row's end (recomputing a few outputs: same values).
 */
EXPORT(resize_vertical)
void resize_vertical(const u8 *src, i32 width, const i32 *first, const i32 *weights, i32 taps, u8 *dst, i32 outputs) {
  for (i32 y = 0; y < outputs; y++) {
    const i32 *w = weights + y * taps;
    const u8 *rows = src + first[y] * width;
    u8 *out = dst + y * width;
    if (width < 16) {
      for (i32 x = 0; x < width; x++) {
        i32 sum = RESAMPLE_HALF;
        for (i32 k = 0; k < taps; k++) sum += rows[k * width + x] * w[k];
        out[x] = clip8(sum);
      }
      continue;
    }
    for (i32 x = 0;; x += 16) {
      if (x > width - 16) x = width - 16;
      v128_t s0 = wasm_i32x4_splat(RESAMPLE_HALF), s1 = s0, s2 = s0, s3 = s0;
      const u8 *p = rows + x;
      for (i32 k = 0; k < taps; k++, p += width) {
        v128_t weight = wasm_i32x4_splat(w[k]);
        v128_t bytes = wasm_v128_load(p);
        v128_t lo = wasm_u16x8_extend_low_u8x16(bytes), hi = wasm_u16x8_extend_high_u8x16(bytes);
        s0 = wasm_i32x4_add(s0, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(lo), weight));
        s1 = wasm_i32x4_add(s1, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(lo), weight));
        s2 = wasm_i32x4_add(s2, wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(hi), weight));
        s3 = wasm_i32x4_add(s3, wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(hi), weight));
      }
      wasm_v128_store(out + x, clip_narrow(s0, s1, s2, s3));
      if (x == width - 16) break;
    }
  }
}

/* ---- Gaussian blur: Pillow's BoxBlur.c, whole radius 0 or 1 (every sigma up to about 2: DINO's range) -----------
 * One extended box pass: out = (centre window x ww + the two next pixels x fw + 2^23) >> 24, weights totalling 2^24,
 * in u32 arithmetic (sums below 2^32, so wrapping i32 lanes and a logical shift are exact). Radius 0: the window is
 * the pixel itself; radius 1: three pixels. Edges replicate the end pixels. */

/* 8 outputs of one pass from five rows/lines of bytes (l2 l c r r2 around the outputs), as u8 in the low half. */
static inline v128_t box8(const u8 *l2, const u8 *l, const u8 *c, const u8 *r, const u8 *r2, i32 radius, v128_t ww,
                          v128_t fw) {
  v128_t window, outer;
  if (radius == 0) {
    window = wasm_u16x8_load8x8(c);
    outer = wasm_i16x8_add(wasm_u16x8_load8x8(l), wasm_u16x8_load8x8(r));
  } else {
    window = wasm_i16x8_add(wasm_i16x8_add(wasm_u16x8_load8x8(l), wasm_u16x8_load8x8(c)), wasm_u16x8_load8x8(r));
    outer = wasm_i16x8_add(wasm_u16x8_load8x8(l2), wasm_u16x8_load8x8(r2));
  }
  v128_t round = wasm_i32x4_splat(1 << 23);
  v128_t lo = wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(window), ww),
                                            wasm_i32x4_mul(wasm_u32x4_extend_low_u16x8(outer), fw)), round);
  v128_t hi = wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(window), ww),
                                            wasm_i32x4_mul(wasm_u32x4_extend_high_u16x8(outer), fw)), round);
  v128_t words = wasm_i16x8_narrow_i32x4(wasm_u32x4_shr(lo, 24), wasm_u32x4_shr(hi, 24)); /* each <= 255 */
  return wasm_u8x16_narrow_i16x8(words, words);
}

static inline u8 box1(i32 l2, i32 l, i32 c, i32 r, i32 r2, i32 radius, u32 ww, u32 fw) {
  u32 window = radius == 0 ? (u32)c : (u32)(l + c + r);
  u32 outer = radius == 0 ? (u32)(l + r) : (u32)(l2 + r2);
  return (u8)((window * ww + outer * fw + (1u << 23)) >> 24);
}

/* One pass along a line of `length` bytes held in `line` from offset 2, with 2 replicated values each side (and
 * 8 bytes of slack after): into `out`. */
static void line_pass(const u8 *line, u8 *out, i32 length, i32 radius, u32 ww, u32 fw) {
  const v128_t vww = wasm_i32x4_splat((i32)ww), vfw = wasm_i32x4_splat((i32)fw);
  if (length < 8) {
    for (i32 x = 0; x < length; x++) out[x] = box1(line[x], line[x + 1], line[x + 2], line[x + 3], line[x + 4], radius, ww, fw);
    return;
  }
  for (i32 x = 0;; x += 8) {
    if (x > length - 8) x = length - 8;
    wasm_v128_store64_lane(out + x, box8(line + x, line + x + 1, line + x + 2, line + x + 3, line + x + 4, radius, vww, vfw), 0);
    if (x == length - 8) break;
  }
}

static void pad_line(u8 *line, const u8 *from, i32 length) {
  line[0] = line[1] = from[0];
  for (i32 x = 0; x < length; x++) line[x + 2] = from[x];
  line[length + 2] = line[length + 3] = from[length - 1];
}

/* One column pass over a width x height plane into `dst`: output row y from rows y-2 .. y+2, clamped. */
static void column_pass(const u8 *src, u8 *dst, i32 width, i32 height, i32 radius, u32 ww, u32 fw) {
  const v128_t vww = wasm_i32x4_splat((i32)ww), vfw = wasm_i32x4_splat((i32)fw);
  for (i32 y = 0; y < height; y++) {
    const u8 *row[5];
    for (i32 k = 0; k < 5; k++) {
      i32 at = y + k - 2;
      row[k] = src + (at < 0 ? 0 : at >= height ? height - 1 : at) * width;
    }
    u8 *out = dst + y * width;
    if (width < 8) {
      for (i32 x = 0; x < width; x++) out[x] = box1(row[0][x], row[1][x], row[2][x], row[3][x], row[4][x], radius, ww, fw);
      continue;
    }
    for (i32 x = 0;; x += 8) {
      if (x > width - 8) x = width - 8;
      wasm_v128_store64_lane(out + x, box8(row[0] + x, row[1] + x, row[2] + x, row[3] + x, row[4] + x, radius, vww, vfw), 0);
      if (x == width - 8) break;
    }
  }
}

/*
 * Pillow's GaussianBlur on each of `channels` planes of `data` (width x height, channel-first), in place, whole
 * radius 0 or 1: three row passes, then three column passes, a uint8 line after each. Scratch: `planes` holds 2
 * planes, `lines` 2 lines of width + 12 bytes.
 */
EXPORT(gaussian_blur_narrow)
void gaussian_blur_narrow(u8 *data, i32 channels, i32 width, i32 height, i32 radius, u32 ww, u32 fw, u8 *planes,
                          u8 *lines) {
  i32 plane = width * height;
  u8 *a = planes, *b = planes + plane;
  u8 *line = lines, *pass = lines + width + 12;
  for (i32 c = 0; c < channels; c++) {
    u8 *channel = data + c * plane;
    for (i32 y = 0; y < height; y++) {
      u8 *row = channel + y * width;
      pad_line(line, row, width);
      line_pass(line, pass, width, radius, ww, fw);
      pad_line(line, pass, width);
      line_pass(line, pass, width, radius, ww, fw);
      pad_line(line, pass, width);
      line_pass(line, row, width, radius, ww, fw);
    }
    column_pass(channel, a, width, height, radius, ww, fw);
    column_pass(a, b, width, height, radius, ww, fw);
    column_pass(b, channel, width, height, radius, ww, fw);
  }
}

/* ---- Colour: ImageEnhance and Convert.c, per pixel -----------------------------------------------------------
 * `input` maps each byte first (a brightness / contrast table not yet applied; the identity when there is none). */

static inline v128_t load4(const u8 *p) {
  return wasm_u32x4_extend_low_u16x8(wasm_u16x8_extend_low_u8x16(wasm_v128_load32_zero(p)));
}
static inline void store4(u8 *p, v128_t v) {
  v128_t words = wasm_u16x8_narrow_i32x4(v, v);
  wasm_v128_store32_lane(p, wasm_u8x16_narrow_i16x8(words, words), 0);
}

/* Per hue byte: floor(h * 6.0 / 255.0) and the float remainder; per saturation byte: (float)(s / 255.0). */
static i32 hsv_sector6[256];
static float hsv_fraction[256];
static float hsv_saturation[256];
static i32 hsv_tables_ready = 0;
static void hsv_tables(void) {
  for (i32 h = 0; h < 256; h++) {
    double h6 = (float)h * 6.0 / 255.0;
    hsv_sector6[h] = (i32)__builtin_floor(h6);
    hsv_fraction[h] = (float)(h6 - (float)hsv_sector6[h]);
    hsv_saturation[h] = (float)((float)h / 255.0);
  }
  hsv_tables_ready = 1;
}
static inline v128_t gather_i32(const i32 *t, v128_t k) {
  return wasm_i32x4_make(t[wasm_i32x4_extract_lane(k, 0)], t[wasm_i32x4_extract_lane(k, 1)], t[wasm_i32x4_extract_lane(k, 2)], t[wasm_i32x4_extract_lane(k, 3)]);
}
static inline v128_t gather_f32(const float *t, v128_t k) {
  return wasm_f32x4_make(t[wasm_i32x4_extract_lane(k, 0)], t[wasm_i32x4_extract_lane(k, 1)], t[wasm_i32x4_extract_lane(k, 2)], t[wasm_i32x4_extract_lane(k, 3)]);
}

/* Runs `op` on 4 pixels of the three planes of `data` at a time; the last 1-3 pixels through a 4-pixel scratch, so
 * that every pixel takes the one code path. */
typedef void (*pixels4_op)(u8 *r, u8 *g, u8 *b, const void *arg);
static inline void for_each_4_pixels(u8 *data, i32 plane, pixels4_op op, const void *arg) {
  u8 *g = data + plane, *b = data + 2 * plane;
  i32 p = 0;
  for (; p + 4 <= plane; p += 4) op(data + p, g + p, b + p, arg);
  if (p < plane) {
    u8 tail[12] = {0};
    for (i32 k = 0; p + k < plane; k++) tail[k] = data[p + k], tail[4 + k] = g[p + k], tail[8 + k] = b[p + k];
    op(tail, tail + 4, tail + 8, arg);
    for (i32 k = 0; p + k < plane; k++) data[p + k] = tail[k], g[p + k] = tail[4 + k], b[p + k] = tail[8 + k];
  }
}

static inline i32 luma(i32 r, i32 g, i32 b) { return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16; }

/* ImageEnhance.Contrast's mean: PIL's luma (or the gray value) of every pixel, rounded mean. */
EXPORT(mean_luma)
i32 mean_luma(const u8 *data, i32 channels, i32 plane, const u8 *input) {
  u32 sum = 0;
  if (channels == 3) {
    const u8 *g = data + plane, *b = data + 2 * plane;
    for (i32 p = 0; p < plane; p++) sum += (u32)luma(input[data[p]], input[g[p]], input[b[p]]);
  } else {
    for (i32 p = 0; p < plane; p++) sum += input[data[p]];
  }
  return (i32)((double)sum / plane + 0.5);
}

/* ImageEnhance.Color: Image.blend(luma, image, alpha) per pixel, in float32 (no fused multiply-add in WebAssembly:
 * the same rounding as C's), truncated and clipped; 4 pixels at a time. The input table is applied beforehand by
 * the caller. */
static inline v128_t luma4(v128_t r, v128_t g, v128_t b) {
  v128_t sum = wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_mul(r, wasm_i32x4_splat(19595)), wasm_i32x4_mul(g, wasm_i32x4_splat(38470))),
                              wasm_i32x4_add(wasm_i32x4_mul(b, wasm_i32x4_splat(7471)), wasm_i32x4_splat(0x8000)));
  return wasm_i32x4_shr(sum, 16);
}
/* t <= 0 -> 0, t >= 255 -> 255, else (int)t: truncation toward zero, then the clamp (a t in (-1, 0) truncates to 0). */
static inline v128_t clip_truncate4(v128_t t) {
  return wasm_i32x4_min(wasm_i32x4_max(wasm_i32x4_trunc_sat_f32x4(t), wasm_i32x4_splat(0)), wasm_i32x4_splat(255));
}
static void saturation4(u8 *rp, u8 *gp, u8 *bp, const void *arg) {
  v128_t alpha = wasm_f32x4_splat(*(const float *)arg);
  v128_t r = load4(rp), g = load4(gp), b = load4(bp);
  v128_t l = luma4(r, g, b), lf = wasm_f32x4_convert_i32x4(l);
  store4(rp, clip_truncate4(wasm_f32x4_add(lf, wasm_f32x4_mul(alpha, wasm_f32x4_convert_i32x4(wasm_i32x4_sub(r, l))))));
  store4(gp, clip_truncate4(wasm_f32x4_add(lf, wasm_f32x4_mul(alpha, wasm_f32x4_convert_i32x4(wasm_i32x4_sub(g, l))))));
  store4(bp, clip_truncate4(wasm_f32x4_add(lf, wasm_f32x4_mul(alpha, wasm_f32x4_convert_i32x4(wasm_i32x4_sub(b, l))))));
}
EXPORT(adjust_saturation_lanes)
void adjust_saturation_lanes(u8 *data, i32 plane, float alpha) { for_each_4_pixels(data, plane, saturation4, &alpha); }

/* RandomGrayscale: PIL's luma in all three channels. */
EXPORT(to_grayscale)
void to_grayscale(u8 *data, i32 plane, const u8 *input) {
  u8 *g = data + plane, *b = data + 2 * plane;
  for (i32 p = 0; p < plane; p++) {
    u8 l = (u8)luma(input[data[p]], input[g[p]], input[b[p]]);
    data[p] = l;
    g[p] = l;
    b[p] = l;
  }
}

/*
 * adjust_hue computed, 4 pixels at a time, as Convert.c computes it: rgb2hsv's hue and saturation bytes, the hue
 * step, hsv2rgb; float32 lanes where its C computes in float, float64 lanes (4 values as two f64x2) where its
 * expressions mix in doubles (every double-to-float and double-to-int conversion where C has one), so the same bytes.
 * Per hue and saturation byte, the values hsv2rgb derives from them come from 3 KB of tables made on first use
 * (the JS version needs 1 MB of them to be fast). The input table is applied beforehand by the caller. Checked
 * against the JS version on every RGB colour (test/runtime/data/wasm-kernels.test.ts).
 */
typedef struct { v128_t lo, hi; } f64x4;

static inline f64x4 promote4(v128_t f) {
  f64x4 d = { wasm_f64x2_promote_low_f32x4(f), wasm_f64x2_promote_low_f32x4(wasm_i32x4_shuffle(f, f, 2, 3, 0, 1)) };
  return d;
}
static inline v128_t demote4(f64x4 d) {
  return wasm_i32x4_shuffle(wasm_f32x4_demote_f64x2_zero(d.lo), wasm_f32x4_demote_f64x2_zero(d.hi), 0, 1, 4, 5);
}
static inline v128_t trunc4(f64x4 d) {
  return wasm_i32x4_shuffle(wasm_i32x4_trunc_sat_f64x2_zero(d.lo), wasm_i32x4_trunc_sat_f64x2_zero(d.hi), 0, 1, 4, 5);
}
static inline f64x4 add4(f64x4 a, f64x4 b) { f64x4 d = { wasm_f64x2_add(a.lo, b.lo), wasm_f64x2_add(a.hi, b.hi) }; return d; }
static inline f64x4 sub4(f64x4 a, f64x4 b) { f64x4 d = { wasm_f64x2_sub(a.lo, b.lo), wasm_f64x2_sub(a.hi, b.hi) }; return d; }
static inline f64x4 mul4(f64x4 a, f64x4 b) { f64x4 d = { wasm_f64x2_mul(a.lo, b.lo), wasm_f64x2_mul(a.hi, b.hi) }; return d; }
static inline f64x4 div4(f64x4 a, f64x4 b) { f64x4 d = { wasm_f64x2_div(a.lo, b.lo), wasm_f64x2_div(a.hi, b.hi) }; return d; }
static inline f64x4 floor4(f64x4 a) { f64x4 d = { wasm_f64x2_floor(a.lo), wasm_f64x2_floor(a.hi) }; return d; }
static inline f64x4 splat4(double x) { f64x4 d = { wasm_f64x2_splat(x), wasm_f64x2_splat(x) }; return d; }
/* C's round() of a non-negative double, as an int: floor(x + 0.5) (exact here: x < 256). */
static inline v128_t round4(f64x4 x) { return trunc4(floor4(add4(x, splat4(0.5)))); }

static void hue4(u8 *rp, u8 *gp, u8 *bp, const void *arg) {
  v128_t step = wasm_i32x4_splat(*(const i32 *)arg);
  v128_t r = load4(rp), g = load4(gp), b = load4(bp);
  v128_t max = wasm_i32x4_max(r, wasm_i32x4_max(g, b)), min = wasm_i32x4_min(r, wasm_i32x4_min(g, b));
  v128_t gray = wasm_i32x4_eq(max, min);
  /* rgb2hsv */
  v128_t cr = wasm_f32x4_convert_i32x4(wasm_i32x4_sub(max, min));
  v128_t s = wasm_f32x4_div(cr, wasm_f32x4_convert_i32x4(max));
  /* (max - c) / cr of each channel is 0 for the max, exactly 1 for the min, and one quotient for the middle one:
   * one division instead of three, the same floats. */
  v128_t middle = wasm_i32x4_sub(wasm_i32x4_sub(wasm_i32x4_add(r, wasm_i32x4_add(g, b)), max), min);
  v128_t x = wasm_f32x4_div(wasm_f32x4_convert_i32x4(wasm_i32x4_sub(max, middle)), cr);
  v128_t zero = wasm_f32x4_splat(0.0f), unit = wasm_f32x4_splat(1.0f);
  v128_t rc = wasm_v128_bitselect(zero, wasm_v128_bitselect(unit, x, wasm_i32x4_eq(r, min)), wasm_i32x4_eq(r, max));
  v128_t gc = wasm_v128_bitselect(zero, wasm_v128_bitselect(unit, x, wasm_i32x4_eq(g, min)), wasm_i32x4_eq(g, max));
  v128_t bc = wasm_v128_bitselect(zero, wasm_v128_bitselect(unit, x, wasm_i32x4_eq(b, min)), wasm_i32x4_eq(b, max));
  v128_t h_r = wasm_f32x4_sub(bc, gc);                                             /* float - float */
  v128_t h_g = demote4(sub4(add4(splat4(2.0), promote4(rc)), promote4(bc)));       /* 2.0 + rc - bc, in double */
  v128_t h_b = demote4(sub4(add4(splat4(4.0), promote4(gc)), promote4(rc)));       /* 4.0 + gc - rc, in double */
  v128_t is_r = wasm_i32x4_eq(r, max), is_g = wasm_i32x4_eq(g, max);
  v128_t h = wasm_v128_bitselect(h_r, wasm_v128_bitselect(h_g, h_b, is_g), is_r);
  f64x4 wrapped = add4(div4(promote4(h), splat4(6.0)), splat4(1.0));               /* fmod(h / 6.0 + 1.0, 1.0) */
  h = demote4(sub4(wrapped, floor4(wrapped)));
  v128_t hue_in = wasm_v128_andnot(trunc4(mul4(promote4(h), splat4(255.0))), gray);
  v128_t sat = wasm_v128_andnot(trunc4(mul4(promote4(s), splat4(255.0))), gray);
  /* the step, then hsv2rgb */
  v128_t hue = wasm_v128_and(wasm_i32x4_add(hue_in, step), wasm_i32x4_splat(255));
  v128_t i = gather_i32(hsv_sector6, hue);
  v128_t f = gather_f32(hsv_fraction, hue);
  v128_t fs = gather_f32(hsv_saturation, sat);
  f64x4 v = promote4(wasm_f32x4_convert_i32x4(max));
  f64x4 one = splat4(1.0);
  v128_t p = round4(mul4(v, sub4(one, promote4(fs))));
  v128_t q = round4(mul4(v, sub4(one, promote4(wasm_f32x4_mul(fs, f)))));             /* fs * f in float */
  v128_t t = round4(mul4(v, sub4(one, mul4(promote4(fs), sub4(one, promote4(f))))));
  /* i % 6: i is 6 only for hue 255 */
  v128_t sector = wasm_v128_andnot(i, wasm_i32x4_eq(i, wasm_i32x4_splat(6)));
  v128_t s0 = wasm_i32x4_eq(sector, wasm_i32x4_splat(0)), s1 = wasm_i32x4_eq(sector, wasm_i32x4_splat(1));
  v128_t s2 = wasm_i32x4_eq(sector, wasm_i32x4_splat(2)), s3 = wasm_i32x4_eq(sector, wasm_i32x4_splat(3));
  v128_t s4 = wasm_i32x4_eq(sector, wasm_i32x4_splat(4)), s5 = wasm_i32x4_eq(sector, wasm_i32x4_splat(5));
  /* sectors 0-5: (v t p) (q v p) (p v t) (p q v) (t p v) (v p q) */
  v128_t out_r = wasm_v128_bitselect(max, wasm_v128_bitselect(q, wasm_v128_bitselect(t, p, s4), s1), wasm_v128_or(s0, s5));
  v128_t out_g = wasm_v128_bitselect(max, wasm_v128_bitselect(q, wasm_v128_bitselect(t, p, s0), s3), wasm_v128_or(s1, s2));
  v128_t out_b = wasm_v128_bitselect(max, wasm_v128_bitselect(q, wasm_v128_bitselect(t, p, s2), s5), wasm_v128_or(s3, s4));
  /* saturation byte 0 (gray, or a chroma too small to show): (v, v, v) */
  v128_t flat = wasm_i32x4_eq(sat, wasm_i32x4_splat(0));
  store4(rp, wasm_v128_bitselect(max, out_r, flat));
  store4(gp, wasm_v128_bitselect(max, out_g, flat));
  store4(bp, wasm_v128_bitselect(max, out_b, flat));
}

/* torchvision adjust_hue on a PIL image (uint8 hue plus `hue_step`, wrapping), on the three planes of `data`, in
 * place. */
EXPORT(adjust_hue_lanes)
void adjust_hue_lanes(u8 *data, i32 plane, i32 hue_step) {
  if (!hsv_tables_ready) hsv_tables();
  for_each_4_pixels(data, plane, hue4, &hue_step);
}

/* data[i] = table[data[i]]. */
EXPORT(apply_table)
void apply_table(u8 *data, i32 length, const u8 *table) {
  for (i32 i = 0; i < length; i++) data[i] = table[data[i]];
}

/* ToTensor + Normalize (and Solarization, folded in): out[c][p] = tables[c][data[c][p]], 256 floats per channel. */
EXPORT(normalize)
void normalize(const u8 *data, i32 channels, i32 plane, const float *tables, float *out) {
  for (i32 c = 0; c < channels; c++) {
    const float *table = tables + 256 * c;
    const u8 *in = data + c * plane;
    float *to = out + c * plane;
    for (i32 p = 0; p < plane; p++) to[p] = table[in[p]];
  }
}

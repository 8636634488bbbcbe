// Reference quantiser for tests/hardware/test_fixed_point.py: runs the real ap_types headers shipped
// with hls4ml so tenfold's Python model can be compared with them bit for bit.
//
// Built in slices so the (slow) template instantiations compile in parallel:
//   * with -DTENFOLD_PART=<name> -DTENFOLD_PART_FILE='"<file>"': defines the kernel table <name>[]
//     from the lines TENFOLD_TYPE((ap_fixed<...>)) listed in <file>;
//   * without TENFOLD_PART: main(), which includes "tenfold_parts.inc" (lines
//     TENFOLD_PART_TABLE(<name>, <count>)) to find the slices in order.
//
// Usage: ap_quantize <in> <out>. <in> holds uint64 n_types, then per type: uint64 n, n doubles.
// <out> receives, per type, the n doubles T(x).to_double().
#include <ap_fixed.h>
#include <ap_int.h>

#include <cstdint>
#include <cstdio>
#include <vector>

typedef void (*tenfold_kernel)(const double*, double*, uint64_t);

template <class T>
void tenfold_run(const double* in, double* out, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) out[i] = T(in[i]).to_double();
}

#define TENFOLD_UNPAREN(...) __VA_ARGS__

#ifdef TENFOLD_PART
#define TENFOLD_TYPE(T) &tenfold_run<TENFOLD_UNPAREN T>,
extern const tenfold_kernel TENFOLD_PART[] = {
#include TENFOLD_PART_FILE
};
#else
#define TENFOLD_PART_TABLE(name, count) extern const tenfold_kernel name[];
#include "tenfold_parts.inc"
#undef TENFOLD_PART_TABLE

struct Part {
  const tenfold_kernel* table;
  uint64_t count;
};
#define TENFOLD_PART_TABLE(name, count) {name, count},
static const Part parts[] = {
#include "tenfold_parts.inc"
};

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <in> <out>\n", argv[0]);
    return 2;
  }
  std::FILE* in = std::fopen(argv[1], "rb");
  std::FILE* out = std::fopen(argv[2], "wb");
  if (!in || !out) {
    std::fprintf(stderr, "cannot open input or output file\n");
    return 2;
  }
  std::vector<tenfold_kernel> kernels;
  for (const Part& p : parts)
    for (uint64_t i = 0; i < p.count; ++i) kernels.push_back(p.table[i]);
  uint64_t n_types = 0;
  if (std::fread(&n_types, sizeof n_types, 1, in) != 1 || n_types != kernels.size()) {
    std::fprintf(stderr, "input declares %llu types, binary has %llu\n", (unsigned long long)n_types,
                 (unsigned long long)kernels.size());
    return 3;
  }
  std::vector<double> xs, ys;
  for (uint64_t t = 0; t < n_types; ++t) {
    uint64_t n = 0;
    if (std::fread(&n, sizeof n, 1, in) != 1) return 4;
    xs.resize(n);
    ys.resize(n);
    if (std::fread(xs.data(), sizeof(double), n, in) != n) return 4;
    kernels[t](xs.data(), ys.data(), n);
    if (std::fwrite(ys.data(), sizeof(double), n, out) != n) return 5;
  }
  std::fclose(in);
  return std::fclose(out) == 0 ? 0 : 5;
}
#endif

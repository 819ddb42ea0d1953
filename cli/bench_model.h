// The model of the engine benchmarks (bench train, bench generate, bench train --gpus): Llama-
// shaped, head_dim = d_model / heads, random weights. One set of shape options and one config
// for all three, over any options struct with the fields layers, d_model, heads, kv_heads, ffn
// and vocab (their values before parsing are the defaults the help shows).
#pragma once
#include <string>

#include "cli/options.h"
#include "model/config.h"
#include "topk/core.h"

namespace topk::cli {

template <class O>
void add_model_shape(CLI::App& app, O& o, int min_vocab) {
  auto dflt = [](int v) { return " (default " + std::to_string(v) + ")"; };
  add_int(app, "--layers", o.layers, 1, 1 << 16, "layers" + dflt(o.layers));
  add_int(app, "--d-model", o.d_model, 1, 1 << 20, "hidden size" + dflt(o.d_model));
  add_int(app, "--heads", o.heads, 1, 1 << 12, "query heads" + dflt(o.heads));
  add_int(app, "--kv-heads", o.kv_heads, 1, 1 << 12, "KV heads" + dflt(o.kv_heads));
  add_int(app, "--ffn", o.ffn, 1, 1 << 22, "intermediate size" + dflt(o.ffn));
  add_int(app, "--vocab", o.vocab, min_vocab, 1 << 24, "vocabulary" + dflt(o.vocab));
}

// The validated config of that model, with positions up to max_pos.
template <class O>
ModelConfig bench_model_config(const O& o, int max_pos) {
  TOPK_CHECK(o.d_model % o.heads == 0, "--d-model %d is not a multiple of --heads %d", o.d_model,
             o.heads);
  ModelConfig c;
  c.arch = Arch::llama;
  c.hidden = o.d_model, c.inter = o.ffn, c.layers = o.layers;
  c.heads = o.heads, c.kv_heads = o.kv_heads, c.head_dim = o.d_model / o.heads;
  c.vocab = o.vocab;
  c.max_pos = max_pos;
  validate(c, "bench model");
  return c;
}

}  // namespace topk::cli

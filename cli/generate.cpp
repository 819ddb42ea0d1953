// topk generate --model DIR --prompt TEXT: streams a continuation, prefilling the prompt with
// one attention policy and decoding with another (exact top-k decoding by default off).
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/timer.h"
#include "model/infer.h"
#include "model/tokenizer.h"

namespace topk::cli {

int generate(int argc, char** argv) {
  CLI::App app("Streams a continuation of a prompt from a model folder, prefilling the prompt "
               "with one attention policy and decoding with another.", "topk generate");
  std::string dir, prompt, ids_arg, attention = "full", prefill = "full", device = "auto";
  int max_new = 64;
  bool no_bos = false;
  CacheOpts cache;
  SampleOpts so;
  add_text(app, "--model", dir, "a model folder (config.json + model.safetensors)")->type_name("DIR");
  auto* have_prompt = add_text(app, "--prompt", prompt, "prompt text (in the model's tokenizer)");
  add_text(app, "--ids", ids_arg, "prompt token ids, e.g. 1,2,3 (any model, a tokenizer or not)");
  add_text(app, "--attention", attention, "decode policy: full | topk:k=64 | "
           "topk:ratio=0.05,share=group | window:w=256,sink=4 | oracle:... (default full)");
  add_text(app, "--prefill-attention", prefill, "prompt policy: full | topk:... | indexer (with "
           "a model that has one) (default full)");
  add_int(app, "--max-new", max_new, 0, 1 << 30, "tokens to generate (default 64; generation "
          "stops at the model's max_position_embeddings)");
  add_real(app, "--temperature", so.temperature, Range{0, 1000}, "0 = greedy (default 0)");
  add_int(app, "--top-k", so.top_k, 0, INT32_MAX, "sample among the K most likely (0 = all)");
  add_seed(app, "--seed", so.seed, "sampling seed");
  app.add_flag("--no-bos", no_bos, "do not start the prompt with BOS");
  app.add_flag("--indexer-fp8", cache.indexer_fp8, "keep the Lightning Indexer's keys in the KV "
               "cache as FP8 E4M3 with a scale per key (models with an indexer)");
  add_device(app, device);
  if (int rc = parse(app, argc, argv); rc >= 0) return rc;
  if (dir.empty() || (!*have_prompt && ids_arg.empty())) {
    std::fprintf(stderr, "topk generate: error: give --model DIR and --prompt TEXT or --ids 1,2,3 "
                 "(see topk generate --help)\n");
    return 2;
  }
  AttnPolicy dec = parse_policy(attention), pre = parse_policy(prefill);
  check_prefill_policy(pre, "--prefill-attention");
  Device dev = parse_device(device);
  Model m = model_load(dir);
  model_to(m, dev, false);
  const Tokenizer& tok = m.tok;
  std::vector<int> ids;
  if (*have_prompt) {
    ids = encode(tok, prompt, !no_bos);
  } else {
    for (int64_t id : parse_int_list(ids_arg, "--ids", 0, m.cfg.vocab - 1)) ids.push_back(int(id));
  }
  TOPK_CHECK(!ids.empty(), "the prompt is empty");
  const int64_t P = int64_t(ids.size()), positions = m.cfg.max_pos;
  TOPK_CHECK(P <= positions, "the prompt has %lld tokens, more than the model's %lld positions "
             "(max_position_embeddings)", (long long)P, (long long)positions);
  if (P + max_new > positions) {
    std::fprintf(stderr, "topk generate: note: --max-new %d stops at the model's %lld positions "
                 "(max_position_embeddings): at most %lld new tokens\n", max_new,
                 (long long)positions, (long long)(positions - P));
    max_new = int(positions - P);
  }
  KVCache kc = kv_cache_create(m, 1, int(ids.size()) + max_new, cache);
  std::vector<float> logits;
  double t0 = now_seconds();
  model_step(m, kc, ids.data(), int(ids.size()), pre, logits, true);
  double t1 = now_seconds();
  int produced = 0;
  Sampler s = sampler_create(so);
  for (int n = 0; n < max_new; n++) {
    int t = sample(s, logits.data(), m.cfg.vocab);
    bool eos = false;
    for (int e : tok.eos_ids) eos |= t == e;
    for (int e : m.cfg.eos_ids) eos |= t == e;
    if (eos) break;
    produced++;
    if (tok.has_text()) std::fputs(token_bytes(tok, t).c_str(), stdout);
    else std::printf("%s%d", n ? "," : "", t);
    std::fflush(stdout);
    if (n + 1 < max_new) model_step(m, kc, &t, 1, dec, logits, true);
  }
  std::printf("\n");
  std::fflush(stdout);
  double t2 = now_seconds();
  std::fprintf(stderr, "prefill %zu tokens (%s) %.1f ms; decoded %d tokens (%s) at %.1f tok/s\n",
               ids.size(), policy_str(pre).c_str(), 1e3 * (t1 - t0), produced,
               policy_str(dec).c_str(), produced > 1 ? (produced - 1) / (t2 - t1) : 0.0);
  return 0;
}

}  // namespace topk::cli

// topk generate --model DIR --prompt TEXT: streams a continuation, prefilling the prompt with
// one attention policy and decoding with another (exact top-k decoding by default off).
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "core/timer.h"
#include "model/infer.h"
#include "model/tokenizer.h"

namespace topk::cli {

static void generate_usage() {
  std::fprintf(stderr,
               "usage: topk generate --model DIR (--prompt TEXT | --ids 1,2,3) [options]\n"
               "  --attention POLICY          decode policy: full | topk:k=64 |\n"
               "                              topk:ratio=0.05,share=group (default full)\n"
               "  --prefill-attention POLICY  prompt policy (default full)\n"
               "  --max-new N                 tokens to generate (default 64)\n"
               "  --temperature T             0 = greedy (default 0)\n"
               "  --top-k K  --seed S         sampling options\n"
               "  --no-bos                    do not start the prompt with BOS\n"
               "  --device D                  cpu, cuda or auto (default: cuda when a GPU is present)\n");
}

int generate(int argc, char** argv) {
  std::string dir, prompt, ids_arg, attention = "full", prefill = "full", device = "auto";
  int max_new = 64;
  bool have_prompt = false, bos = true;
  SampleOpts so;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      TOPK_CHECK(i + 1 < argc, "%s needs a value", a.c_str());
      return argv[++i];
    };
    if (a == "--model") dir = next();
    else if (a == "--prompt") prompt = next(), have_prompt = true;
    else if (a == "--ids") ids_arg = next();
    else if (a == "--attention") attention = next();
    else if (a == "--prefill-attention") prefill = next();
    else if (a == "--max-new") max_new = std::atoi(next().c_str());
    else if (a == "--temperature") so.temperature = float(std::atof(next().c_str()));
    else if (a == "--top-k") so.top_k = std::atoi(next().c_str());
    else if (a == "--seed") so.seed = std::strtoull(next().c_str(), nullptr, 10);
    else if (a == "--no-bos") bos = false;
    else if (a == "--device") device = next();
    else if (a == "--help" || a == "-h") return generate_usage(), 0;
    else return std::fprintf(stderr, "topk generate: unknown option '%s'\n", a.c_str()), generate_usage(), 2;
  }
  if (dir.empty() || (!have_prompt && ids_arg.empty())) return generate_usage(), 2;
  TOPK_CHECK(max_new >= 0, "--max-new must be >= 0");
  AttnPolicy dec = parse_policy(attention), pre = parse_policy(prefill);
  Device dev = parse_device(device);
  Model m = model_load(dir);
  model_to(m, dev, false);
  const Tokenizer& tok = m.tok;
  std::vector<int> ids;
  if (have_prompt) {
    ids = encode(tok, prompt, bos);
  } else {
    std::stringstream ss(ids_arg);
    std::string item;
    while (std::getline(ss, item, ',')) ids.push_back(std::atoi(item.c_str()));
  }
  TOPK_CHECK(!ids.empty(), "the prompt is empty");
  KVCache kc = kv_cache_create(m, 1, int(ids.size()) + max_new);
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

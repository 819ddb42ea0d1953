// Data-parallel training through NCCL with one rank on one GPU: the whole distributed path (the
// id file, the communicator, bucketed all-reduces on the side stream launched from the backward's
// layer hook, the summed loss) must leave the one-GPU trainer's results exactly as they were.
// With one rank each all-reduce sums a single term, so the bits must match. Needs a GPU and a
// loadable libnccl (TOPK_NCCL_LIBRARY names one that is not on the loader's path).
// Several ranks need several GPUs: see docs/engine.md for the commands of that check.
#include <gtest/gtest.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/trainer.h"

using namespace topk;

namespace {

std::string tmp(const char* name) {
  return testing::TempDir() + "topk_cuda_dist_" + std::to_string(getpid()) + "_" + name;
}

TrainConfig run_file(const std::string& out) {
  TrainConfig c = train_config_from_json_text(R"({
    "out": ")" + out + R"(",
    "model": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 64},
    "task": {"name": "copy", "min_len": 4, "max_len": 12, "alphabet": 8},
    "attention": "topk:k=4", "steps": 6, "batch_tokens": 256, "grad_accum": 2,
    "lr": 0.003, "warmup": 2, "weight_decay": 0.01, "clip": 1.0, "seed": 3, "log_every": 0})",
                                              "run");
  c.device = Device::cuda;
  return c;
}

Dist one_rank(const std::string& dir, const char* nonce) {
  DistEnv e;
  e.nonce = nonce;
  return dist_open(e, dir);
}

}  // namespace

TEST(CudaDist, OneRankNcclEqualsOneGpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  if (!dist_available()) GTEST_SKIP() << "built without NCCL's header";
  std::string d0 = tmp("plain"), d1 = tmp("overlap"), d2 = tmp("after"), d3 = tmp("resumed");
  Model plain, overlapped, after, resumed;
  TrainResult r0 = train_run(run_file(d0), -1, &plain);

  Dist a = one_rank(d1, "a");
  EXPECT_EQ(dist_sum(a, 2.5), 2.5);
  a.bucket_bytes = 0;  // a bucket per layer: every launch from the backward's hook is exercised
  TrainResult r1 = train_run(run_file(d1), -1, &overlapped, &a);
  ASSERT_EQ(a.buckets.size(), size_t(3 + 2));
  Dist b = one_rank(d2, "b");
  b.overlap = false;  // every bucket after the backward
  TrainResult r2 = train_run(run_file(d2), -1, &after, &b);

  EXPECT_EQ(r1.losses, r0.losses);
  EXPECT_EQ(r2.losses, r0.losses);
  EXPECT_EQ(model_host_weights(overlapped), model_host_weights(plain));
  EXPECT_EQ(model_host_weights(after), model_host_weights(plain));

  // Interrupted under the distributed path, resumed without it (resume on any number of GPUs).
  {
    Dist c = one_rank(d3, "c");
    train_run(run_file(d3), 3, nullptr, &c);
  }
  TrainResult rest = train_run(run_file(d3), -1, &resumed);
  EXPECT_EQ(rest.start_step, 3);
  EXPECT_EQ(model_host_weights(resumed), model_host_weights(plain));
  for (const std::string& d : {d0, d1, d2, d3}) remove_tree(d);
}

// Data-parallel training through NCCL with one rank on one GPU: the whole distributed path (the
// id file, the communicator, bucketed all-reduces on the side stream launched from the backward's
// layer hook, the summed loss) must leave the one-GPU trainer's results exactly as they were.
// With one rank each all-reduce sums a single term, so the bits must match. Needs a GPU and a
// loadable libnccl (TOPK_NCCL_LIBRARY names one that is not on the loader's path).
// With two GPUs, TwoRanksFollowOneGpu starts two ranks of this binary (RankOfTwo) and checks
// that they stay bit-identical to each other and follow the one-GPU run within bf16 rounding.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/device_mem.h"
#include "core/json.h"

#include "train/checkpoint.h"
#include "train/dist.h"
#include "train/trainer.h"

using namespace topk;

namespace {

std::string tmp(const char* name) {
  return testing::TempDir() + "topk_cuda_dist_" + std::to_string(getpid()) + "_" + name;
}

TrainConfig run_file(const std::string& out, int steps = 6) {
  TrainConfig c = train_config_from_json_text(R"({
    "out": ")" + out + R"(",
    "model": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 96,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 64},
    "task": {"name": "copy", "min_len": 4, "max_len": 12, "alphabet": 8},
    "attention": "topk:k=4", "steps": )" + std::to_string(steps) + R"(, "batch_tokens": 256, "grad_accum": 2,
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

// A rank's results as raw bytes in a file (core/json.h's file helpers).
template <class T>
void write_vector(const std::string& path, const std::vector<T>& v) {
  write_file_atomic(path, std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)));
}

template <class T>
std::vector<T> read_vector(const std::string& path) {
  const std::string b = read_file(path);
  std::vector<T> v(b.size() / sizeof(T));
  std::memcpy(v.data(), b.data(), v.size() * sizeof(T));
  return v;
}

constexpr int kTwoRankSteps = 24;
constexpr const char* kTwoRankDir = "TOPK_TEST_TWO_RANK_DIR";

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

// One rank of TwoRanksFollowOneGpu, started by it through dist_spawn (RANK, WORLD_SIZE and the
// nonce in the environment); on its own it has nothing to do.
TEST(CudaDist, RankOfTwo) {
  const char* dir = std::getenv(kTwoRankDir);
  if (!dir) GTEST_SKIP() << "runs only as a rank started by CudaDist.TwoRanksFollowOneGpu";
  DistEnv e = dist_env();
  ASSERT_EQ(e.world, 2);
  Dist d = dist_open(e, dir);
  Model m;
  TrainResult r = train_run(run_file(std::string(dir) + "/out", kTwoRankSteps), -1, &m, &d);
  const std::string me = std::string(dir) + "/rank" + std::to_string(e.rank);
  write_vector(me + ".losses", r.losses);
  write_vector(me + ".weights", model_host_weights(m));
}

// Two GPUs, two processes, NCCL between them: the same global batches as one GPU, each rank
// taking half of every micro-batch's sequences. The ranks must hold the same weights bit for bit
// after every step (identical summed gradients, identical AdamW), and follow the one-GPU run's
// losses: only the order of the gradient sums and the row blocks of bf16 GEMMs differ.
TEST(CudaDist, TwoRanksFollowOneGpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  if (!dist_available()) GTEST_SKIP() << "built without NCCL's header";
  if (device_count() < 2) GTEST_SKIP() << "needs two GPUs, this host has " << device_count();
  if (std::getenv("RANK") || std::getenv(kTwoRankDir)) GTEST_SKIP() << "inside a launch";
  const std::string dir = tmp("two"), one = tmp("one");
  ASSERT_EQ(system(("mkdir -p " + dir).c_str()), 0);
  Model plain;
  TrainResult r0 = train_run(run_file(one, kTwoRankSteps), -1, &plain);
  setenv(kTwoRankDir, dir.c_str(), 1);
  const int rc = dist_spawn({"--gtest_filter=CudaDist.RankOfTwo"}, 2);
  unsetenv(kTwoRankDir);
  ASSERT_EQ(rc, 0) << "a rank failed";

  const auto l0 = read_vector<double>(dir + "/rank0.losses");
  const auto l1 = read_vector<double>(dir + "/rank1.losses");
  const auto w0 = read_vector<float>(dir + "/rank0.weights");
  const auto w1 = read_vector<float>(dir + "/rank1.weights");
  const std::vector<float> w = model_host_weights(plain);
  ASSERT_EQ(l0.size(), size_t(kTwoRankSteps));
  EXPECT_EQ(l0, l1);  // both log the all-reduced loss
  ASSERT_EQ(w0.size(), w.size());
  EXPECT_TRUE(w0 == w1) << "the ranks' weights differ";
  double worst = 0;
  for (size_t i = 0; i < l0.size(); i++) {
    worst = std::max(worst, std::fabs(l0[i] - r0.losses[i]) / r0.losses[i]);
    EXPECT_NEAR(l0[i], r0.losses[i], 0.02 * r0.losses[i]) << "step " << i;
  }
  EXPECT_LT(l0.back(), 0.8 * l0.front());  // it trains
  double num = 0, den = 0;
  for (size_t i = 0; i < w.size(); i++) num += double(w0[i] - w[i]) * (w0[i] - w[i]), den += double(w[i]) * w[i];
  const double rel = std::sqrt(num / den);
  EXPECT_LT(rel, 0.02) << "weights after " << kTwoRankSteps << " steps, relative L2 difference";
  std::printf("two ranks vs one GPU over %d steps: largest relative loss difference %.2e, "
              "weights' relative L2 difference %.2e\n", kTwoRankSteps, worst, rel);
  remove_tree(dir);
  remove_tree(one);
}

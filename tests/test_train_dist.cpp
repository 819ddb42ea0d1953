// Data-parallel training's host logic on the CPU (train/dist.h): sharding a global batch,
// the loss scaling that makes the sum of the shards' gradients the whole batch's gradient, the
// gradient buckets and the backward's layer hook that launches them, and a whole run where the
// ranks' gradients are summed in process (the test's stand-in for NCCL's all-reduce) against the
// one-device trainer. The NCCL path itself runs in tests/cuda/test_cuda_dist.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>

#include "cli_util.h"
#include "core/rng.h"
#include "model/ops.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/dist.h"
#include "train/optim.h"
#include "train/trainer.h"

using namespace topk;

namespace {

std::string tmp(const char* name) {
  return testing::TempDir() + "topk_dist_" + std::to_string(getpid()) + "_" + name;
}

TrainConfig run_file(const std::string& out, int steps, int layers = 2) {
  return train_config_from_json_text(R"({
    "out": ")" + out + R"(",
    "model": {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
              "num_hidden_layers": )" + std::to_string(layers) + R"(, "num_attention_heads": 2,
              "num_key_value_heads": 1, "head_dim": 16},
    "task": {"name": "copy", "min_len": 3, "max_len": 9, "alphabet": 6},
    "attention": "topk:k=4", "steps": )" + std::to_string(steps) + R"(, "batch_tokens": 120,
    "grad_accum": 2, "lr": 0.003, "warmup": 2, "weight_decay": 0.01, "clip": 0.5, "seed": 7,
    "log_every": 0})", "run");
}

Model model_of(const TrainConfig& c) {
  Model m = model_create(c.model);
  model_init(m, c.seed, c.init_std);
  return m;
}

std::vector<Batch> global_batch(const TrainConfig& c, const Model& m, int64_t step, double* count) {
  std::vector<Batch> micro;
  *count = 0;
  for (int a = 0; a < c.grad_accum; a++) {
    micro.push_back(make_task_batch(c.task, m.tok, c.seed, step, a, c.batch_tokens));
    *count += loss_count(micro.back());
  }
  return micro;
}

std::vector<float> host(const Buffer& b) {
  return std::vector<float>(b.ptr<float>(), b.ptr<float>() + b.numel());
}

}  // namespace

// The shards of every world size are contiguous runs of whole sequences that together are the
// batch, in order; fewer sequences than ranks leaves some shards empty.
TEST(Dist, ShardsPartitionTheBatch) {
  Rng r(3);
  std::vector<std::vector<int>> seqs;
  std::vector<int> from;
  for (int s = 0; s < 7; s++) {
    seqs.push_back(std::vector<int>(size_t(2 + r.below(30)), 1 + s));
    from.push_back(int(r.below(2)));
  }
  const Batch b = make_batch(seqs, from);
  for (int world = 1; world <= 9; world++) {
    Batch joined;
    joined.cu_seqlens = {0};
    double count = 0;
    int empty = 0;
    for (int rank = 0; rank < world; rank++) {
      Batch s = shard_batch(b, rank, world);
      ASSERT_EQ(s.cu_seqlens.front(), 0);
      ASSERT_EQ(s.cu_seqlens.back(), s.size());
      empty += s.size() == 0;
      count += loss_count(s);
      for (size_t i = 1; i < s.cu_seqlens.size(); i++)
        joined.cu_seqlens.push_back(joined.cu_seqlens.back() + s.cu_seqlens[i] - s.cu_seqlens[i - 1]);
      for (auto [dst, src] : {std::pair{&joined.tokens, &s.tokens}, {&joined.targets, &s.targets},
                              {&joined.pos, &s.pos}})
        dst->insert(dst->end(), src->begin(), src->end());
      joined.mask.insert(joined.mask.end(), s.mask.begin(), s.mask.end());
    }
    EXPECT_EQ(joined.tokens, b.tokens) << world;
    EXPECT_EQ(joined.targets, b.targets) << world;
    EXPECT_EQ(joined.mask, b.mask) << world;
    EXPECT_EQ(joined.pos, b.pos) << world;
    EXPECT_EQ(joined.cu_seqlens, b.cu_seqlens) << world;
    EXPECT_EQ(count, loss_count(b)) << world;
    if (world <= 3) {
      EXPECT_EQ(empty, 0) << world;  // 7 sequences balance over a few ranks
    }
    if (world > 7) {
      EXPECT_GE(empty, world - 7) << world;
    }
  }
}

// Buckets cover the flat vector once, in launch order: the top layers first, the embedding,
// final norm and LM head last.
TEST(Dist, BucketsCoverTheGradientOnce) {
  Model m = model_of(run_file("unused", 1, 5));
  for (int64_t bytes : {int64_t(0), int64_t(4000), int64_t(1) << 30}) {
    std::vector<GradBucket> bs = grad_buckets(m, bytes);
    std::vector<int> seen(size_t(m.numel), 0);
    int last_layer = 1 << 30;
    for (const GradBucket& b : bs) {
      for (int64_t i = 0; i < b.numel; i++) seen[size_t(b.offset + i)]++;
      EXPECT_LE(b.layer, last_layer);
      last_layer = b.layer;
    }
    for (int64_t i = 0; i < m.numel; i++) ASSERT_EQ(seen[size_t(i)], 1) << "bytes " << bytes << " at " << i;
    if (bytes == 0) {
      EXPECT_EQ(bs.size(), size_t(5 + 2));  // a bucket per layer, then the rest
    }
    if (bytes == int64_t(1) << 30) {
      EXPECT_EQ(bs.size(), size_t(1 + 2));
    }
  }
}

// The backward calls the layer hook from the top layer down, and when it does, that layer's
// gradient is final: a bucket launched there sums what the whole backward would have left.
TEST(Dist, LayerHookSeesFinishedGradients) {
  TrainConfig c = run_file("unused", 1, 4);
  Model m = model_of(c);
  double count = 0;
  std::vector<Batch> micro = global_batch(c, m, 0, &count);
  std::vector<GradBucket> bs = grad_buckets(m, 0);
  Buffer grad(DType::f32, {m.numel});
  std::vector<int> order;
  std::vector<std::vector<float>> at_hook(bs.size());
  Acts a;
  model_forward(m, micro[0], c.attention, a);
  model_loss(m, micro[0], a, float(1 / count));
  a.layer_done = [&](int l) {
    order.push_back(l);
    for (size_t i = 0; i < bs.size(); i++)
      if (bs[i].layer == l)
        at_hook[i].assign(grad.ptr<float>() + bs[i].offset, grad.ptr<float>() + bs[i].offset + bs[i].numel);
  };
  model_backward(m, micro[0], c.attention, a, grad);
  EXPECT_EQ(order, (std::vector<int>{3, 2, 1, 0}));
  for (size_t i = 0; i < bs.size(); i++) {
    if (bs[i].layer < 0) continue;
    std::vector<float> fin(grad.ptr<float>() + bs[i].offset, grad.ptr<float>() + bs[i].offset + bs[i].numel);
    EXPECT_EQ(at_hook[i], fin) << "layer " << bs[i].layer;
    double norm = 0;
    for (float x : fin) norm += double(x) * x;
    EXPECT_GT(norm, 0) << "layer " << bs[i].layer;
  }
}

// Summing the ranks' shard gradients gives the one-device gradient of the global batch (the
// loss is scaled by the whole batch's count on every rank), for several world sizes.
TEST(Dist, ShardGradientsSumToTheGlobalGradient) {
  TrainConfig c = run_file("unused", 1);
  Model m = model_of(c);
  double count = 0;
  std::vector<Batch> micro = global_batch(c, m, 4, &count);
  Acts a;
  Buffer whole(DType::f32, {m.numel});
  const double loss1 = shard_grad(m, micro, count, 0, 1, c.attention, a, whole, nullptr);
  const std::vector<float> g1 = host(whole);
  for (int world : {2, 3, 5}) {
    std::vector<double> sum(size_t(m.numel), 0.0);
    double loss = 0;
    Buffer g(DType::f32, {m.numel});
    for (int rank = 0; rank < world; rank++) {
      loss += shard_grad(m, micro, count, rank, world, c.attention, a, g, nullptr);
      for (int64_t i = 0; i < m.numel; i++) sum[size_t(i)] += g.ptr<float>()[i];
    }
    EXPECT_NEAR(loss, loss1, 1e-5 * loss1) << world;
    double err = 0, ref = 0;
    for (int64_t i = 0; i < m.numel; i++) {
      err += (sum[size_t(i)] - g1[size_t(i)]) * (sum[size_t(i)] - g1[size_t(i)]);
      ref += double(g1[size_t(i)]) * g1[size_t(i)];
    }
    EXPECT_LE(std::sqrt(err / ref), 1e-5) << world;
  }
}

// A whole run with 3 ranks whose gradients are summed in process takes the same steps as the
// one-device trainer: the same losses and, after the last AdamW step, the same weights (float
// tolerance: the shards sum their rows in another order).
TEST(Dist, ShardedRunFollowsTheOneDeviceRun) {
  const int steps = 6, world = 3;
  std::string dir = tmp("one");
  TrainConfig c = run_file(dir, steps);
  Model ref;
  TrainResult r1 = train_run(c, -1, &ref);
  Model m = model_of(c);
  AdamW opt = adamw_create(m);
  Acts a;
  Buffer g(DType::f32, {m.numel}), sum(DType::f32, {m.numel});
  for (int64_t step = 0; step < steps; step++) {
    double count = 0, loss = 0;
    std::vector<Batch> micro = global_batch(c, m, step, &count);
    ops::zero(sum);
    for (int rank = 0; rank < world; rank++) {
      loss += shard_grad(m, micro, count, rank, world, c.attention, a, g, nullptr);
      ops::add(sum, sum, g);  // what NCCL's all-reduce does across GPUs
    }
    clip_grad_norm(sum, c.clip);
    adamw_step(opt, m, sum, lr_at(c.sched, step), c.adam);
    EXPECT_NEAR(loss / count, r1.losses[size_t(step)], 1e-5 * r1.losses[size_t(step)]) << step;
  }
  const std::vector<float> w1 = model_host_weights(ref), wn = model_host_weights(m);
  double maxd = 0;
  for (size_t i = 0; i < w1.size(); i++) maxd = std::max(maxd, double(std::abs(w1[i] - wn[i])));
  std::printf("max weight difference after %d steps: %.2e\n", steps, maxd);
  EXPECT_LE(maxd, 2e-5);
  remove_tree(dir);
}

TEST(Dist, EnvironmentOfTorchrunStyleLaunchers) {
  for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "TOPK_DIST_NONCE", "MASTER_PORT",
                        "TORCHELASTIC_RUN_ID"})
    unsetenv(k);
  DistEnv e = dist_env();
  EXPECT_FALSE(e.from_env);
  EXPECT_EQ(e.world, 1);
  setenv("RANK", "3", 1), setenv("WORLD_SIZE", "4", 1), setenv("LOCAL_RANK", "1", 1);
  setenv("MASTER_PORT", "29500", 1);
  e = dist_env();
  EXPECT_TRUE(e.from_env);
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.nonce, "run-29500");
  setenv("TOPK_DIST_NONCE", "a/b", 1);
  EXPECT_EQ(dist_env().nonce, "a_b");  // a file name
  setenv("RANK", "4", 1);
  EXPECT_THROW(dist_env(), Error);
  for (const char* k : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "TOPK_DIST_NONCE", "MASTER_PORT"})
    unsetenv(k);
}

// --gpus on the CPU fails at once with a message that says what is missing.
TEST(Dist, CliGpusNeedsCudaAndNccl) {
  std::string dir = tmp("cli");
  make_dirs(dir);
  std::ofstream(dir + "/run.json") << R"({"out": ")" + dir + R"(/out", "model": {"architectures": ["LlamaForCausalLM"], "hidden_size": 32,
    "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1}, "steps": 2, "batch_tokens": 64})";
  std::string out;
  int rc = test::run_topk("train --config " + dir + "/run.json --gpus 2 --device cpu", out);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("GPU"), std::string::npos) << out;
  EXPECT_EQ(out.find("trained steps"), std::string::npos) << out;
  remove_tree(dir);
}

// Built-in tasks, checkpoint folders and the sampler.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>

#include "core/json.h"
#include "model/infer.h"
#include "train/checkpoint.h"
#include "train/data.h"

using namespace topk;

static Tokenizer bytes_tok() {
  TokenizerConfig t;
  t.present = true;
  return tokenizer_bytes(t);
}

TEST(Tasks, CopyAndRecallExamples) {
  Rng rng(4);
  TaskOpts copy{"copy", 3, 5, 4};
  for (int i = 0; i < 20; i++) {
    Example e = make_example(copy, bytes_tok(), rng);
    int n = (int(e.tokens.size()) - 3) / 2;
    ASSERT_GE(n, 3);
    ASSERT_LE(n, 5);
    EXPECT_EQ(e.tokens.front(), 256);
    EXPECT_EQ(e.tokens.back(), 257);
    EXPECT_EQ(e.tokens[size_t(n + 1)], '|');
    EXPECT_EQ(e.loss_from, n + 1);
    EXPECT_EQ(e.answer_from, n + 2);
    for (int j = 0; j < n; j++) {
      EXPECT_EQ(e.tokens[size_t(1 + j)], e.tokens[size_t(n + 2 + j)]);
      EXPECT_GE(e.tokens[size_t(1 + j)], 'a');
      EXPECT_LT(e.tokens[size_t(1 + j)], 'a' + 4);
    }
  }
  TaskOpts recall{"recall", 2, 4, 6};
  for (int i = 0; i < 20; i++) {
    Example e = make_example(recall, bytes_tok(), rng);
    std::string s(e.tokens.begin() + 1, e.tokens.end() - 1);
    size_t q = s.find('?');
    ASSERT_NE(q, std::string::npos);
    char key = s[q + 1], val = s[q + 3];
    EXPECT_NE(s.find(std::string(1, key) + "=" + val), std::string::npos) << s;
    EXPECT_EQ(e.tokens[size_t(e.loss_from)], ':');
    EXPECT_EQ(e.tokens[size_t(e.answer_from)], val);
  }
  EXPECT_THROW(validate_task({"recall", 2, 8, 6}), Error);
  EXPECT_THROW(validate_task({"sort", 2, 8, 6}), Error);
}

TEST(Tasks, BatchesAreDeterministicAndMasked) {
  TaskOpts copy{"copy", 3, 6, 8};
  Batch a = make_task_batch(copy, bytes_tok(), 9, 17, 0, 100);
  Batch b = make_task_batch(copy, bytes_tok(), 9, 17, 0, 100);
  Batch c = make_task_batch(copy, bytes_tok(), 9, 17, 1, 100);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_NE(a.tokens, c.tokens);
  EXPECT_LE(a.size(), 100);
  EXPECT_GE(a.cu_seqlens.size(), 5u);
  for (size_t s = 0; s + 1 < a.cu_seqlens.size(); s++) {
    int lo = a.cu_seqlens[s], hi = a.cu_seqlens[s + 1];
    EXPECT_EQ(a.pos[size_t(lo)], 0);
    EXPECT_EQ(a.targets[size_t(hi - 1)], -1);  // no target across sequences
    EXPECT_EQ(a.mask[size_t(lo)], 0.0f);       // the prompt is not in the loss
    EXPECT_EQ(a.mask[size_t(hi - 2)], 1.0f);   // predicting EOS is
  }
}

TEST(Checkpoint, AtomicSwapAndRecovery) {
  std::string root = testing::TempDir() + "topk_ckpt_" + std::to_string(getpid());
  std::string dir = root + "/checkpoint";
  ModelConfig c;
  c.hidden = 8, c.inter = 8, c.layers = 1, c.heads = 2, c.kv_heads = 1, c.head_dim = 4, c.vocab = 260;
  c.tokenizer.present = true;
  Model m = model_create(c);
  model_init(m, 1);
  AdamW opt = adamw_create(m);
  opt.t = 5;
  opt.m.ptr<float>()[3] = 0.25f;
  make_dirs(root);
  save_checkpoint(dir, m, opt, json{{"step", 5}});
  m.host()[0] = 42.0f;
  save_checkpoint(dir, m, opt, json{{"step", 6}});  // replaces the first
  EXPECT_NE(access((dir + ".old").c_str(), F_OK), 0);
  EXPECT_NE(access((dir + ".tmp").c_str(), F_OK), 0);
  Model r;
  AdamW ro;
  json st;
  std::string found;
  ASSERT_TRUE(find_checkpoint(dir, &found));
  load_checkpoint(found, r, ro, st);
  EXPECT_EQ(st["step"], 6);
  EXPECT_EQ(model_host_weights(r), model_host_weights(m));
  EXPECT_EQ(ro.t, 5);
  EXPECT_EQ(ro.m.ptr<float>()[3], 0.25f);
  // A crash between the two renames leaves only dir.old: it is found.
  ASSERT_EQ(std::rename(dir.c_str(), (dir + ".old").c_str()), 0);
  ASSERT_TRUE(find_checkpoint(dir, &found));
  EXPECT_EQ(found, dir + ".old");
  remove_tree(dir + ".old");
  EXPECT_FALSE(find_checkpoint(dir, &found));
  remove_tree(root);
}

TEST(Sampler, GreedyAndSeeded) {
  std::vector<float> logits = {0.1f, 2.0f, 2.0f, -1.0f};
  Sampler g = sampler_create({});
  EXPECT_EQ(sample(g, logits.data(), 4), 1);  // ties: lowest id
  SampleOpts o;
  o.temperature = 1.0f, o.top_k = 2, o.seed = 7;
  Sampler a = sampler_create(o), b = sampler_create(o);
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < 200; i++) {
    int x = sample(a, logits.data(), 4);
    EXPECT_EQ(x, sample(b, logits.data(), 4));
    counts[x]++;
  }
  EXPECT_EQ(counts[0] + counts[3], 0);  // outside the top 2
  EXPECT_GT(counts[1], 50);
  EXPECT_GT(counts[2], 50);
}

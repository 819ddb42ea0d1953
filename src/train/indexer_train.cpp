#include "train/indexer_train.h"

#include <cmath>
#include "core/check.h"

#include "model/views.h"
#include "train/optim.h"

namespace topk {

bool is_indexer_run_key(const std::string& key) {
  return key == "indexer" || key == "indexer_stage";
}

const char* indexer_stage_name(IndexerStage s) {
  return s == IndexerStage::dense ? "dense" : s == IndexerStage::sparse ? "sparse" : "none";
}

namespace {

// The spec as config fields of m.
void apply_spec(const IndexerSpec& s, ModelConfig& m) {
  m.index_n_heads = s.heads;
  m.index_head_dim = s.head_dim;
  m.index_topk = s.topk;
  m.index_rope_head_dim = s.rope_dim >= 0 ? s.rope_dim : s.head_dim / 2;
}

void check_same(const IndexerSpec& s, const ModelConfig& m, const std::string& where) {
  ModelConfig want = m;
  apply_spec(s, want);
  TOPK_CHECK(want.index_n_heads == m.index_n_heads && want.index_head_dim == m.index_head_dim &&
                 want.index_topk == m.index_topk &&
                 want.index_rope_head_dim == m.index_rope_head_dim,
             "%s already has an indexer (%d heads of %d, top-%d, %d rotary dims) that differs "
             "from the run file's \"indexer\"", where.c_str(), m.index_n_heads,
             m.index_head_dim, m.index_topk, m.index_rope_head_dim);
}

}  // namespace

void indexer_run_keys(const json& j, TrainConfig& c, const std::string& what) {
  const char* w = what.c_str();
  if (j.contains("indexer")) {
    const json& x = j["indexer"];
    TOPK_CHECK(x.is_object(), "%s: indexer must be an object {\"index_n_heads\", "
               "\"index_head_dim\", \"index_topk\"[, \"index_rope_head_dim\"]}", w);
    for (auto it = x.begin(); it != x.end(); ++it)
      TOPK_CHECK(it.key() == "index_n_heads" || it.key() == "index_head_dim" ||
                     it.key() == "index_topk" || it.key() == "index_rope_head_dim",
                 "%s: unknown indexer key '%s'", w, it.key().c_str());
    const std::string wi = what + " indexer";
    c.indexer.heads = int(json_int(x, "index_n_heads", wi, 1, 1024, 0));
    c.indexer.head_dim = int(json_int(x, "index_head_dim", wi, 1, 4096, 0));
    c.indexer.topk = int(json_int(x, "index_topk", wi, 1, 1 << 24, 0));
    c.indexer.rope_dim = int(json_int(x, "index_rope_head_dim", wi, 0, 4096, -1));
    TOPK_CHECK(c.indexer.heads > 0 && c.indexer.head_dim > 0 && c.indexer.topk > 0, "%s: indexer "
               "needs positive index_n_heads, index_head_dim and index_topk", w);
    if (c.init.empty()) {
      if (c.model.has_indexer()) {
        check_same(c.indexer, c.model, what + " model");
      } else {
        apply_spec(c.indexer, c.model);
        validate(c.model, what + " model");
      }
    }
  }
  const std::string stage = json_string(j, "indexer_stage", what, "none");
  TOPK_CHECK(stage == "none" || stage == "dense" || stage == "sparse", "%s: indexer_stage '%s' "
             "is not dense or sparse", w, stage.c_str());
  c.indexer_stage = stage == "dense" ? IndexerStage::dense
                    : stage == "sparse" ? IndexerStage::sparse : IndexerStage::none;
  if (c.indexer_stage == IndexerStage::none) return;
  TOPK_CHECK(c.model.has_indexer() || c.indexer.heads > 0 || !c.init.empty(), "%s: indexer_stage "
             "needs a model with an indexer: give \"indexer\": {\"index_n_heads\", "
             "\"index_head_dim\", \"index_topk\"}", w);
  if (c.indexer_stage == IndexerStage::dense) {
    TOPK_CHECK(c.attention.kind == PolicyKind::full, "%s: the dense indexer stage fits the indexer "
               "to full attention; \"attention\" must be full, got '%s'", w,
               policy_str(c.attention).c_str());
    if (!j.contains("eval_attention")) c.eval_attention = parse_policy("indexer");
  } else {
    if (!j.contains("attention")) c.attention = parse_policy("indexer");
    TOPK_CHECK(c.attention.kind == PolicyKind::indexer, "%s: the sparse indexer stage trains the "
               "model under the indexer's selection; \"attention\" must be indexer (or indexer:k=N), "
               "got '%s'", w, policy_str(c.attention).c_str());
    if (!j.contains("eval_attention")) c.eval_attention = c.attention;
  }
}

Model indexer_init_model(const TrainConfig& cfg) {
  if (cfg.indexer.heads == 0) return model_load(cfg.init);
  ModelConfig mc = load_config(cfg.init);
  if (mc.has_indexer()) {
    check_same(cfg.indexer, mc, cfg.init);
    return model_load(cfg.init);
  }
  apply_spec(cfg.indexer, mc);
  validate(mc, cfg.init + " with the run file's indexer");
  Model m = model_create(mc);
  model_init(m, cfg.seed, cfg.init_std);
  model_load_into(m, cfg.init, true);
  model_load_tokenizer(m, cfg.init);
  return m;
}

double indexer_step(const Model& m, const TrainConfig& cfg, const std::vector<Batch>& micro,
                    double count, Acts& acts, const TensorView& grad, double* kl) {
  TOPK_CHECK(m.cfg.has_indexer(), "indexer_stage %s: the model has no indexer; give \"indexer\" "
             "in the run file", indexer_stage_name(cfg.indexer_stage));
  double rows = 0;
  for (const Batch& b : micro) rows += double(b.size());
  IndexerTrain tr;
  tr.grad = grad;
  tr.scale = float(1.0 / (rows * m.cfg.layers));
  tr.sparse = cfg.indexer_stage == IndexerStage::sparse;
  acts.ix_train = &tr;
  double loss = 0;
  try {
    // model_backward's recomputed forwards (recompute) never see ix_train: it is model_forward's.
    for (const Batch& b : micro) {
      model_forward(m, b, cfg.attention, acts);
      if (!tr.sparse) {
        loss += model_loss(m, b, acts, 0);  // reported only: the model is frozen
        continue;
      }
      loss += model_loss(m, b, acts, float(1.0 / count));
      model_backward(m, b, cfg.attention, acts, grad);
    }
  } catch (...) {
    acts.ix_train = nullptr;
    throw;
  }
  acts.ix_train = nullptr;
  *kl = tr.loss / (rows * m.cfg.layers);
  return loss;
}

double indexer_clip(const Model& m, const TensorView& grad, float clip) {
  const int64_t split = int64_t(m.indexer_begin);
  const double a = clip_grad_norm(view_at(grad, 0, {split}), clip);
  const double b = clip_grad_norm(view_at(grad, split, {m.numel - split}), clip);
  return std::sqrt(a * a + b * b);
}

void indexer_trainable(const Model& m, IndexerStage stage, size_t* first, size_t* last) {
  *first = 0;
  *last = m.params.size();
  if (!m.cfg.has_indexer()) return;
  if (stage == IndexerStage::none) *last = m.indexer_first_param;   // the indexer stays
  if (stage == IndexerStage::dense) *first = m.indexer_first_param;  // the model stays
}

}  // namespace topk

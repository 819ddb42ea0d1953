// Built-in word lists for needle keys and the generated prose, and the prose grammar.
#include "tasks/words.h"

#include <string>

namespace topk::tasks {

// Written for this project: common English adjectives and concrete nouns with regular plurals,
// so that "adjective-noun" keys (RULER's key form) number about 350,000 and the prose reads
// plainly. The two lists share no word.
const std::vector<std::string_view> kAdjectives = {
    "able", "absent", "acid", "active", "actual", "adept", "afraid", "agile", "airy", "alert",
    "alive", "amber", "ample", "ancient", "angry", "annual", "antique", "anxious", "apt", "arctic",
    "arid", "ashen", "ashamed", "avid", "awake", "aware", "awful", "azure", "bad", "bald", "balmy",
    "bare", "basic", "bashful", "beige", "big", "bitter", "black", "bland", "blank", "bleak",
    "blind", "blissful", "blond", "blue", "blunt", "blurry", "bold", "bony", "bored", "bossy",
    "brave", "breezy", "brief", "bright", "brisk", "broad", "broken", "bronze", "brown", "bubbly",
    "bulky", "bumpy", "burly", "busy", "calm", "candid", "capable", "careful", "careless", "casual",
    "cautious", "central", "certain", "charming", "cheap", "cheerful", "chief", "chilly", "choppy",
    "chubby", "civil", "classic", "clean", "clear", "clever", "close", "cloudy", "clumsy", "coarse",
    "cold", "common", "compact", "complex", "cool", "cordial", "corny", "cosmic", "costly", "cozy",
    "crafty", "crazy", "creamy", "crisp", "crooked", "crowded", "cruel", "crunchy", "cuddly",
    "curly", "curious", "current", "curved", "cute", "daily", "damp", "dapper", "daring", "dark",
    "dashing", "dear", "decent", "deep", "deft", "dense", "devoted", "dim", "direct", "dirty",
    "distant", "dizzy", "double", "drab", "dreamy", "dry", "dull", "dusty", "dutiful", "eager",
    "early", "earnest", "easy", "edgy", "eerie", "elastic", "elder", "electric", "elegant",
    "eloquent", "empty", "endless", "equal", "even", "evergreen", "exact", "exotic", "expert",
    "faded", "faint", "fair", "faithful", "false", "famous", "fancy", "far", "fast", "fearless",
    "feisty", "fertile", "festive", "fickle", "fierce", "fiery", "final", "fine", "firm", "fit",
    "fixed", "flaky", "flat", "flawless", "flimsy", "flowery", "fluffy", "fluid", "flying", "foggy",
    "fond", "formal", "fragile", "frail", "frank", "free", "frequent", "fresh", "friendly",
    "frosty", "frozen", "frugal", "full", "funny", "furry", "fuzzy", "gallant", "gaudy", "general",
    "gentle", "genuine", "giant", "giddy", "gifted", "glad", "gleaming", "glossy", "gloomy",
    "glowing", "golden", "good", "graceful", "gracious", "grand", "granite", "grateful", "grave",
    "gray", "greasy", "great", "green", "grim", "grizzled", "gross", "grouchy", "growing", "grumpy",
    "guilty", "gusty", "hairy", "handy", "happy", "hard", "hardy", "harsh", "hasty", "heavy",
    "hefty", "helpful", "hidden", "high", "hilly", "hoarse", "hollow", "homely", "honest",
    "hopeful", "horrid", "hot", "huge", "humble", "humid", "hungry", "husky", "icy", "ideal",
    "idle", "immense", "inner", "innocent", "instant", "intense", "inviting", "ivory", "jagged",
    "jazzy", "jolly", "jovial", "joyful", "joyous", "juicy", "jumbo", "jumpy", "junior", "keen",
    "kind", "kindly", "knobby", "knotty", "known", "large", "late", "lavish", "lawful", "lazy",
    "leafy", "lean", "learned", "legal", "level", "light", "likely", "limp", "linen", "liquid",
    "little", "lively", "livid", "loyal", "local", "lofty", "lone", "lonely", "long", "loose",
    "lost", "loud", "lovely", "low", "lucid", "lucky", "lumpy", "lush", "magic", "main", "major",
    "mammoth", "massive", "mature", "meager", "mean", "medium", "meek", "mellow", "melodic",
    "merry", "messy", "metal", "mild", "milky", "minor", "minty", "misty", "mixed", "modern",
    "modest", "moist", "moral", "mossy", "motley", "muddy", "murky", "musty", "mute", "mutual",
    "naive", "narrow", "nasty", "native", "natural", "naval", "near", "neat", "needy", "nervous",
    "new", "nice", "nimble", "noble", "noisy", "normal", "noted", "numb", "oaken", "obedient",
    "odd", "official", "oily", "old", "open", "orange", "orderly", "ornate", "outer", "oval",
    "overt", "pale", "paltry", "peaceful", "pearl", "perfect", "petite", "pink", "plain", "playful",
    "pleasant", "plucky", "plump", "plush", "polite", "poor", "popular", "portly", "posh", "potent",
    "pretty", "prickly", "prime", "private", "prompt", "proper", "proud", "public", "puffy", "pure",
    "purple", "pushy", "quaint", "quick", "quiet", "quirky", "radiant", "ragged", "rainy", "rapid",
    "rare", "raw", "ready", "real", "rear", "recent", "red", "regal", "regular", "remote", "rich",
    "right", "rigid", "ripe", "robust", "rocky", "rosy", "rotten", "rough", "round", "rowdy",
    "royal", "rude", "rural", "rustic", "rusty", "sad", "safe", "salty", "sandy", "sane", "scaly",
    "scarce", "scary", "scenic", "secret", "serene", "serious", "shabby", "shaggy", "shallow",
    "sharp", "shiny", "short", "showy", "shrill", "shy", "silent", "silky", "silly", "silver",
    "simple", "sincere", "single", "sizzling", "skinny", "sleek", "sleepy", "slender", "slight",
    "slim", "slimy", "slow", "small", "smart", "smoky", "smooth", "snappy", "snowy", "snug",
    "sober", "social", "soft", "solar", "solemn", "solid", "sore", "sour", "spare", "sparkling",
    "speedy", "spicy", "spiky", "spiral", "splendid", "spotless", "spotted", "spry", "square",
    "stale", "stark", "steady", "steel", "steep", "sticky", "stiff", "still", "stormy", "stout",
    "straight", "strange", "strict", "striped", "strong", "stuffy", "sturdy", "subtle", "sudden",
    "sugary", "sunny", "super", "superb", "sure", "sweet", "swift", "tall", "tame", "tan", "tangy",
    "tart", "tasty", "taut", "teal", "tender", "tense", "tepid", "terse", "thick", "thin",
    "thirsty", "thorny", "tidy", "tight", "timely", "tiny", "tired", "tough", "tranquil", "tricky",
    "trim", "tropical", "true", "trusty", "twin", "ugly", "ultimate", "unique", "upbeat", "upper",
    "urban", "urgent", "useful", "usual", "vacant", "vague", "vain", "valid", "vast", "verbal",
    "vibrant", "violet", "vital", "vivid", "vocal", "wacky", "warm", "wary", "wavy", "weak",
    "wealthy", "weary", "weekly", "weird", "wet", "white", "whole", "wide", "wild", "willing",
    "windy", "winter", "wiry", "wise", "witty", "wobbly", "wooden", "woolly", "worn", "worthy",
    "yearly", "yellow", "young", "youthful", "yummy", "zany", "zealous", "zesty", "zippy",};

const std::vector<std::string_view> kNouns = {
    "acorn", "actor", "album", "alley", "almond", "anchor", "angle", "ankle", "answer", "anthem",
    "apple", "apron", "arch", "arena", "arrow", "artist", "attic", "author", "autumn", "avenue",
    "award", "badge", "bagel", "baker", "bakery", "ballad", "balloon", "bamboo", "banana", "band",
    "banjo", "bank", "banner", "barn", "barrel", "basket", "bat", "beach", "beacon", "bead", "beak",
    "beam", "bean", "bear", "beard", "beaver", "bed", "bee", "beetle", "bell", "belt", "bench",
    "berry", "bicycle", "bird", "biscuit", "blanket", "blender", "blossom", "board", "boat",
    "bonnet", "book", "boot", "bottle", "boulder", "bowl", "box", "bracelet", "branch", "brick",
    "bridge", "broom", "brush", "bubble", "bucket", "buckle", "bugle", "building", "bulb", "bundle",
    "bunny", "button", "cabin", "cable", "cake", "camel", "camera", "camp", "canal", "candle",
    "candy", "canoe", "canvas", "canyon", "cape", "captain", "car", "card", "carpet", "carrot",
    "cart", "castle", "cat", "cave", "cedar", "cellar", "chair", "channel", "chapel", "cherry",
    "chess", "chest", "chimney", "chin", "chisel", "circle", "city", "clarinet", "cliff", "clock",
    "closet", "cloud", "clover", "coast", "coat", "cobra", "coconut", "coin", "collar", "comet",
    "compass", "cookie", "coral", "cork", "corner", "cottage", "couch", "county", "cousin", "cover",
    "cowboy", "crab", "crane", "crater", "crayon", "creek", "cricket", "crow", "crown", "crystal",
    "cup", "cupboard", "curtain", "cushion", "cyclist", "daisy", "dancer", "deck", "desert", "desk",
    "dessert", "diamond", "diary", "dish", "doctor", "dog", "doll", "dolphin", "donkey", "door",
    "dove", "dragon", "drawer", "dream", "dress", "drum", "duck", "dune", "eagle", "easel", "elbow",
    "elephant", "elevator", "elk", "ember", "emerald", "engine", "envelope", "eraser", "falcon",
    "farm", "farmer", "faucet", "feather", "fence", "fern", "ferry", "fiddle", "field", "fig",
    "finch", "fire", "flag", "flame", "flask", "fleet", "flower", "flute", "folder", "forest",
    "fork", "fort", "fountain", "fox", "frame", "frog", "fruit", "funnel", "gadget", "galaxy",
    "garage", "garden", "gate", "gazebo", "gecko", "gem", "geyser", "ghost", "giraffe", "glacier",
    "glass", "glove", "goat", "gong", "gown", "grape", "guitar", "gull", "hall", "hammer",
    "hamster", "hand", "harbor", "harp", "hat", "hawk", "hazel", "heart", "hedge", "helmet", "herb",
    "hermit", "heron", "hill", "hinge", "hippo", "hive", "hood", "hook", "horizon", "horn", "horse",
    "hotel", "house", "iceberg", "igloo", "imp", "inlet", "insect", "island", "jacket", "jaguar",
    "jar", "jasmine", "jeep", "jelly", "jester", "jewel", "journal", "judge", "jug", "jungle",
    "kayak", "kettle", "key", "kingdom", "kiosk", "kitchen", "kite", "kitten", "knight", "knot",
    "koala", "label", "ladder", "lagoon", "lake", "lamb", "lamp", "lantern", "laptop", "lark",
    "lawn", "lemon", "lens", "leopard", "letter", "library", "lighthouse", "lily", "lime", "lion",
    "lizard", "llama", "lobster", "locket", "lodge", "log", "lotus", "magnet", "mailbox", "map",
    "maple", "marble", "market", "mask", "meadow", "medal", "melon", "meteor", "mill", "mirror",
    "mitten", "moat", "monkey", "moon", "motel", "motor", "mountain", "muffin", "mule", "museum",
    "mushroom", "napkin", "necklace", "needle", "nest", "net", "nickel", "notebook", "novel",
    "nugget", "nut", "oak", "oar", "oasis", "ocean", "office", "olive", "onion", "orbit", "orchard",
    "orchid", "organ", "ostrich", "otter", "oven", "owl", "oyster", "paddle", "pagoda", "palace",
    "panda", "panther", "paper", "parade", "parcel", "parrot", "path", "peach", "peacock", "peanut",
    "pear", "pebble", "pelican", "pen", "pencil", "penguin", "pepper", "piano", "pickle", "picnic",
    "pier", "pigeon", "pillow", "pilot", "pine", "pipe", "pirate", "pistachio", "planet", "plate",
    "plum", "pocket", "poem", "pond", "poppy", "porch", "portrait", "prairie", "puddle",
    "pumpkin", "puppet", "puppy", "puzzle", "quail", "quarry", "queen", "quill", "quilt", "rabbit",
    "raccoon", "radio", "radish", "raft", "rainbow", "ranch", "raven", "recipe", "reef", "ribbon",
    "riddle", "ring", "river", "road", "robin", "robot", "rocket", "roof", "room", "rooster",
    "rope", "rose", "ruby", "rug", "ruler", "saddle", "sail", "sailor", "salad", "sandal",
    "satchel", "saucer", "school", "scooter", "seal", "season", "seed", "shadow", "shark", "shed",
    "shell", "shelter", "ship", "shoe", "shovel", "shrub", "singer", "sink", "skate", "sketch",
    "skirt", "sled", "slipper", "snail", "snake", "sock", "sofa", "soldier", "song", "spider",
    "sponge", "spoon", "spring", "squash", "squirrel", "stable", "stadium", "stage", "stair",
    "star", "station", "statue", "stone", "stool", "storm", "stove", "stream", "street", "string",
    "studio", "suitcase", "summit", "sun", "sunset", "swan", "sweater", "table", "tablet", "tailor",
    "tambourine", "tank", "teacher", "teapot", "telescope", "temple", "tent", "thimble", "thistle",
    "thread", "throne", "ticket", "tiger", "toad", "token", "tower", "town", "toy", "tractor",
    "trail", "train", "tree", "trophy", "truck", "trumpet", "tulip", "tunnel", "turkey", "turnip",
    "turtle", "umbrella", "unicorn", "uniform", "valley", "vase", "vest", "village", "vine",
    "violin", "vulture", "wagon", "waiter", "wall", "wallet", "walnut", "walrus", "wand",
    "wardrobe", "wave", "whale", "wheel", "whistle", "willow", "window", "windmill", "wizard",
    "worm", "wreath", "yacht", "yak", "yard", "zebra", "zipper",};

// Regular verbs: third person adds "s" ("es" after sh, ch), past adds "ed" (or "d" after 'e').
static const std::vector<std::string_view> kVerbs = {
    "answer", "borrow", "carve", "clean", "climb", "collect", "cover", "crush", "deliver", "describe",
    "enjoy", "explain", "follow", "gather", "greet", "guard", "help", "invent", "join", "jump",
    "kick", "land", "lift", "listen", "measure", "melt", "mention", "move", "notice", "open",
    "paint", "pick", "plant", "polish", "pull", "push", "remember", "repair", "return", "save",
    "share", "shout", "sign", "start", "test", "trust", "turn", "visit", "wander", "watch"};
static const std::vector<std::string_view> kAdverbs = {
    "quietly", "slowly", "quickly", "gladly", "carefully", "loudly", "rarely", "often", "calmly",
    "boldly", "softly", "eagerly", "gently", "kindly", "proudly", "suddenly", "warmly", "wisely",
    "neatly", "briskly"};
static const std::vector<std::string_view> kPreps = {
    "near", "behind", "under", "above", "beside", "across", "inside", "around", "beyond", "along"};

template <class V> static std::string pick(Rng& r, const V& v) { return std::string(v[r.below(v.size())]); }

static bool vowel(char c) { return std::string_view("aeiou").find(c) != std::string_view::npos; }
static std::string third(std::string_view v) {
  std::string s(v);
  if (s.ends_with("sh") || s.ends_with("ch")) return s + "es";
  return s + "s";
}
static std::string past(std::string_view v) {
  std::string s(v);
  return s.back() == 'e' ? s + "d" : s + "ed";
}
static std::string plural(std::string_view n) {
  std::string s(n);
  if (s.ends_with("sh") || s.ends_with("ch") || s.back() == 's' || s.back() == 'x' || s.back() == 'z')
    return s + "es";
  if (s.back() == 'y' && s.size() > 1 && !vowel(s[s.size() - 2])) return s.substr(0, s.size() - 1) + "ies";
  return s + "s";
}
// "a" or "an" before a word.
static std::string article(std::string_view w) { return vowel(w[0]) || w == "honest" ? "an" : "a"; }

std::vector<std::string> prose_sentence(Rng& r) {
  std::string text;
  auto adj = [&] { return pick(r, kAdjectives); };
  auto noun = [&] { return pick(r, kNouns); };
  auto verb = [&] { return pick(r, kVerbs); };
  switch (r.below(6)) {
    case 0: text = "The " + adj() + " " + noun() + " " + third(verb()) + " the " + noun(); break;
    case 1: {
      std::string n = noun();
      text = article(n) + " " + n + " " + pick(r, kPreps) + " the " + noun() + " " + past(verb()) +
             " " + pick(r, kAdverbs);
      text[0] = char(text[0] - 'a' + 'A');
      break;
    }
    case 2: {
      std::string a = adj();
      a[0] = char(a[0] - 'a' + 'A');
      text = a + " " + plural(noun()) + " " + verb() + " " + pick(r, kAdverbs) + " " +
             pick(r, kPreps) + " the " + adj() + " " + noun();
      break;
    }
    case 3: {
      std::string a = adj();
      text = "In the " + noun() + ", the " + noun() + " " + third(verb()) + " " + article(a) + " " +
             a + " " + noun();
      break;
    }
    case 4: text = "Some " + plural(noun()) + " " + verb() + " when the " + noun() + " " +
                   third(verb()) + " " + pick(r, kAdverbs); break;
    default: text = "Every " + noun() + " " + past(verb()) + " the " + adj() + " " + noun() +
                    " and the " + noun(); break;
  }
  text += '.';
  std::vector<std::string> words;
  size_t p = 0;
  while (p < text.size()) {
    size_t q = text.find(' ', p);
    if (q == std::string::npos) q = text.size();
    words.push_back(text.substr(p, q - p));
    p = q + 1;
  }
  return words;
}

}  // namespace topk::tasks

// Small file helpers: whole-file reads, atomic writes (temp name + rename), JSON files.
// Every error names the path.
#pragma once
#include <cstdio>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace topk {

using json = nlohmann::json;

std::string read_file(const std::string& path);

// Writes through `fill` into `path.tmp`, flushes, then renames over `path`: a reader sees the
// old file or the whole new one, never a torn one. fill returns false on a write error.
void write_file_atomic(const std::string& path, const std::function<bool(std::FILE*)>& fill);
void write_file_atomic(const std::string& path, const std::string& bytes);

// Parses JSON text; the error names `what` (a path or a description) and the parser's position.
json parse_json(const std::string& text, const std::string& what);
// Parses a JSON file; the error names the file and the parser's position.
json read_json_file(const std::string& path);
void write_json_file(const std::string& path, const json& j);  // pretty, atomic

}  // namespace topk

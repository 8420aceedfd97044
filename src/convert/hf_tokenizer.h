// The tokenizer.ggml.* metadata of a converted model, from a Hugging Face
// folder's tokenizer.json, tokenizer_config.json (chat template, BOS/EOS,
// add_bos_token) and generation_config.json, as llama.cpp's converter writes
// it: byte-level BPE as "gpt2" (tokens, types, merges, pre-tokenizer name),
// SentencePiece-style BPE (Metaspace / byte fallback) as "llama" with scores
// from the merge ranks. Internal to slm_convert.
#pragma once

#include <cstdint>
#include <string>

#include "convert/hf_config.h"
#include "gguf/writer.h"

namespace slm::convert {

// n_vocab: rows of the embedding; the vocabulary is padded to it with
// "[PADn]" unused tokens, as llama.cpp does.
// A whole file as text; slm::Error "PATH: cannot open".
std::string read_text(const std::string& path);

void add_hf_tokenizer(gguf::Writer& w, const std::string& dir, const HfConfig& config, int64_t n_vocab);

}  // namespace slm::convert

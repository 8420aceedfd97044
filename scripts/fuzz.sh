#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (AddressSanitizer + UBSan) and runs
# each for a bounded time: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...].
# Seed corpora are made in a temporary folder from the fixtures; findings are
# left in that folder and the script exits non-zero. The runs start from a
# fixed seed (SLM_FUZZ_SEED, default 1; 0 = random) so that a bounded run in CI
# explores the same inputs, in the same order, as a longer run made before it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
seed=${SLM_FUZZ_SEED:-1}
shift || true
build=${SLM_FUZZ_BUILD:-build-fuzz}
fixtures=${SLM_FIXTURES:-$PWD/../shared/fixtures}
CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSLM_FUZZ=ON -DSLM_BUILD_TESTS=OFF >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
work=$(mktemp -d)
status=0
for t in "${targets[@]}"; do
  corpus="$work/$t"
  mkdir -p "$corpus"
  case "$t" in
    fuzz_gguf) find "$fixtures/models" -name '*.gguf' -size -2M -exec cp {} "$corpus/" \; ;;
    fuzz_imatrix)
      # Small GGUF files reach the GGUF branch; a legacy .dat with one entry
      # "w" (ncall 1, two values) and the dataset trailer the other.
      find "$fixtures/models" -name '*.gguf' -size -2M -exec cp {} "$corpus/" \;
      printf '\001\000\000\000\001\000\000\000w\001\000\000\000\002\000\000\000\000\000\200?\000\000\000@\001\000\000\000\001\000\000\000d' >"$corpus/legacy.dat" ;;
    fuzz_sparsity)
      # Small GGUF files reach the key checks; a sparsity file, when one of
      # the fixtures' models has been calibrated, the thresholds tensor.
      find "$fixtures/models" -name '*.gguf' -size -2M -exec cp {} "$corpus/" \;
      find "$fixtures" -name '*.sparsity.gguf' -exec cp {} "$corpus/" \; ;;
    fuzz_template) cp "$fixtures"/templates/src/*.jinja "$corpus/" 2>/dev/null || true ;;
    fuzz_tokenizer*) cp "$fixtures"/tokenizer/cases/*.inp "$corpus/" 2>/dev/null || true ;;
    fuzz_request)
      printf '%s' '{"model":"m","messages":[{"role":"system","content":"Be terse."},{"role":"user","content":[{"type":"text","text":"h\u00e9llo"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":16,"temperature":0.7,"top_p":0.9,"stop":["\n","END"],"logprobs":true,"top_logprobs":2,"seed":1}' >"$corpus/chat.json"
      printf '%s' '{"messages":[{"role":"assistant","content":null,"tool_calls":[{"type":"function","id":"c1","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"logit_bias":{"5":-100}}' >"$corpus/tools.json"
      printf '%s' '{"prompt":[1,2,3],"max_completion_tokens":8,"ignore_eos":true,"stop":"x","n":1,"user":"u"}' >"$corpus/tokens.json"
      printf '%s' '{"prompt":"Once upon a time","echo":false,"frequency_penalty":0.5}' >"$corpus/text.json" ;;
    fuzz_eval)
      # First byte: 0 HellaSwag text, 1 JSONL tasks, 2 top-k logits file, 3 bzip2.
      printf '\000Roof: A man is on a roof. he\n3\nis a.\nis b.\nis c.\nstarts pulling.\n' >"$corpus/hellaswag"
      printf '\001{"context": "The sky is", "endings": ["blue.", "green."], "label": 0}\n' >"$corpus/choices"
      # n_vocab 2, k 1, one position: target log p 0, rest -inf, top {id 0, log p 0}.
      printf '\002SLMTOPK\000\001\000\000\000\002\000\000\000\001\000\000\000\020\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\000\000\000\000\000\000\200\377\000\000\000\000\000\000\000\000' >"$corpus/topk"
      printf '\003' >"$corpus/bz2" && printf 'hello\n' | bzip2 -c >>"$corpus/bz2" ;;
    fuzz_safetensors)
      # First byte: even = a safetensors file, odd = a config.json.
      { printf '\000\240\000\000\000\000\000\000\000'
        printf '%-160s' '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[2,1],"data_offsets":[8,12]}}'
        printf '\000\000\200\077\000\000\000\300\200\077\000\300'; } >"$corpus/tensors"
      printf '\001' >"$corpus/config" && cat "$fixtures/hf/tiny-qwen3/config.json" >>"$corpus/config" 2>/dev/null || true
      printf '%s' $'\001{"architectures":["Gemma3ForConditionalGeneration"],"text_config":{"hidden_size":64,"intermediate_size":128,"num_hidden_layers":6,"rope_scaling":{"rope_type":"linear","factor":8.0}}}' >"$corpus/gemma3"
      printf '%s' $'\001{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"llama3","factor":8.0,"original_max_position_embeddings":8192}}' >"$corpus/llama3" ;;
    fuzz_lora_config)
      printf '%s' '{"peft_type":"LORA","r":16,"lora_alpha":32,"lora_dropout":0.05,"bias":"none","use_rslora":false,"use_dora":false,"modules_to_save":null,"rank_pattern":{},"alpha_pattern":{},"target_modules":["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"],"task_type":"CAUSAL_LM"}' >"$corpus/list.json"
      printf '%s' '{"r":8,"lora_alpha":16,"use_rslora":true,"target_modules":"model\\.layers\\.[0-9]+\\.(self_attn|mlp)\\.(q|k|v|o|gate|up|down)_proj"}' >"$corpus/regex.json"
      printf '%s' '{"r":4,"target_modules":"all-linear","layers_to_transform":[0,1]}' >"$corpus/all.json" ;;
    fuzz_grammar)
      # First byte: even ('0') = GBNF, odd ('1') = JSON Schema; a NUL ends the grammar.
      printf '%s\0%s' '0root ::= obj
obj ::= "{" ws ( kv ( "," ws kv )* )? "}"
kv ::= [a-z]+ ws ":" ws ( [0-9]{1,3} | obj ) ws
ws ::= [ \t\n]*' '{a: 12, b: {c:1}}' >"$corpus/gbnf"
      printf '%s\0%s' '1{"type":"object","properties":{"id":{"type":"integer","minimum":-5,"maximum":120},"tags":{"type":"array","items":{"type":"string","pattern":"^[a-z]+\\d?$"},"maxItems":3},"when":{"type":"string","format":"date-time"},"next":{"$ref":"#"}},"required":["id"]}' '{"id": 42, "tags": ["ab1"]}' >"$corpus/schema" ;;
    fuzz_lora_adapter)
      # First byte odd: edits of a valid adapter for the base (see the target);
      # \377 x4 keeps it whole, so the first run loads a good file. Even: a raw file.
      printf '\001\377\377\377\377' >"$corpus/valid"
      printf '\003\377\377\377\377\100\000\000\000\001' >"$corpus/edited_q8"
      printf '\001\200\000\000\000' >"$corpus/truncated"
      printf '\000GGUF\003\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000' >"$corpus/raw" ;;
    fuzz_train_data)
      printf '%s\n' '{"prompt": "Lily had a dog named", "completion": " Biscuit."}' '{"text": "The sun was hot."}' >"$corpus/pc.jsonl"
      printf '%s\n' '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}' >"$corpus/messages.jsonl"
      printf '%s\n' '{"prompt": "x", "completion": 3}' >"$corpus/bad.jsonl"
      printf '%s\n' '{"prompt": "Tom saw a big", "chosen": " dog.", "rejected": " cat."}' >"$corpus/dpo.jsonl"
      printf '%s\n' '{"prompt": [{"role": "user", "content": "Hi"}], "chosen": "Hello.", "rejected": [{"role": "assistant", "content": "Go."}]}' >"$corpus/dpo_messages.jsonl" ;;
    fuzz_toolcall)
      # First byte: family (mod 4: Hermes, Llama 3, Mistral, Functionary) and piece size.
      printf '\000%s' '<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call>' >"$corpus/hermes"
      printf '\001%s' '<|python_tag|>{"name": "a", "parameters": {"x": [1, 2]}}; {"name": "b", "parameters": {}}' >"$corpus/llama3"
      printf '\001%s' '<function=search>{"query": "slm"}</function>' >"$corpus/functionary31"
      printf '\002%s' '[TOOL_CALLS][{"name": "f", "arguments": {"a": "x"}}, {"name": "g", "arguments": {}}]' >"$corpus/mistral"
      printf '\003%s' 'all
Let me look.>>>get_weather
{"city": "Paris"}>>>get_time
{}' >"$corpus/functionary" ;;
  esac
  echo "== $t for ${seconds}s"
  if ! SLM_FIXTURES="$fixtures" "$build/fuzz/$t" -max_total_time="$seconds" -seed="$seed" -rss_limit_mb=4096 \
      -artifact_prefix="$work/$t-" "$corpus" >"$work/$t.log" 2>&1; then
    echo "$t FOUND A PROBLEM: see $work/$t.log"
    tail -n 40 "$work/$t.log"
    status=1
  else
    grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$work/$t.log" | tail -n 1 || true
  fi
done
exit $status

// Package llm talks to a language model for the bot: a streaming client
// of any OpenAI-compatible Chat Completions endpoint (Ollama's /v1,
// llama.cpp's llama-server, vLLM, LocalAI, OpenAI) over net/http and
// Server-Sent Events, and Offline, a deterministic stand-in that streams
// like a model and says in every answer that it is not one.
//
// Neither logs anything: prompts and answers are the caller's to keep
// out of logs.
package llm

"""The typer apps every CLI module registers its commands on."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Build FLAME-QA datasets from talking-head video.")
model_app = typer.Typer(no_args_is_help=True, help="FLAME model files: inspect, generate the demo head.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure: ASR WER, diarization DER, motion metrics.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON.")
app.add_typer(model_app, name="model")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

"""Speech commands: `flameqa speech`, `flameqa eval asr|diarization`, `flameqa bench speech`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from flameqa.cli.app import app, bench_app, eval_app
from flameqa.cli.core import ConfigOpt, SetOpt, build_config, run_stages


@app.command()
def speech(
    out: Path = typer.Option(..., "--out", "-o", help="Run folder holding a completed `clips` table."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    workers: Optional[int] = typer.Option(None, help="Local executor processes."),
    overwrite: bool = typer.Option(False, help="Redo shards that are already complete."),
) -> None:
    """VAD, transcripts with word times and speaker turns: tables `speech` and `words`."""
    run_stages(["speech"], out, config, set_, workers, overwrite)


def _speech_config(config: Optional[Path], overrides: Optional[list[str]]):
    return build_config(config, overrides).speech


@eval_app.command("asr")
def eval_asr(
    audio: Path = typer.Option(..., "--audio", help="An audio/video file or a folder of them (matched to reference ids by file stem)."),
    refs: Path = typer.Option(..., "--refs", help="References: TSV `<file>\\t<text>`, a Sphinx .transcription, or a one-line .txt."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    json_: bool = typer.Option(False, "--json", help="Print the full JSON result (per-file hypotheses included)."),
) -> None:
    """Word error rate (Whisper-style normalisation) and real-time factor of the ASR."""
    from flameqa.speech.eval import evaluate_asr

    res = evaluate_asr(audio, refs, config=_speech_config(config, set_))
    if json_:
        typer.echo(json.dumps(res, indent=1))
    else:
        typer.echo(f"WER {res['wer']:.2%} over {res['ref_words']} words, {res['files']} files; RTF {res['rtf']}")


@eval_app.command("diarization")
def eval_diarization(
    audio: Path = typer.Option(..., "--audio", help="The recording (its stem is the RTTM file id)."),
    rttm: Path = typer.Option(..., "--rttm", help="Reference RTTM."),
    uem: Optional[Path] = typer.Option(None, "--uem", help="Scored regions (UEM); default: the reference's extent (first to last reference turn), whatever the hypothesis."),
    num_speakers: Optional[int] = typer.Option(None, "--num-speakers", help="Give the speaker count (default: estimate)."),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    json_: bool = typer.Option(False, "--json"),
) -> None:
    """Diarization error rate (pyannote.metrics; no collar, overlap scored)."""
    from flameqa.speech.eval import evaluate_diarization

    try:
        res = evaluate_diarization(audio, rttm, uem, config=_speech_config(config, set_), num_speakers=num_speakers)
    except (FileNotFoundError, ValueError) as e:  # bad RTTM/UEM input: a message, not a traceback
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if json_:
        typer.echo(json.dumps(res, indent=1))
    else:
        typer.echo(
            f"DER {res['der']:.2%} (confusion {res['confusion']:.2f} s, missed {res['missed']:.2f} s, "
            f"false alarm {res['false_alarm']:.2f} s of {res['total']:.2f} s; {res['scoring']})"
        )


@bench_app.command("speech")
def bench_speech(
    audio: Optional[Path] = typer.Option(None, "--audio", help="Recording to time (default: a synthetic espeak-ng dialogue)."),
    models: list[str] = typer.Option(["whisper-tiny.en", "whisper-base"], "--model", help="ASR models to time (repeatable)."),
    minutes: float = typer.Option(2.0, help="Length of the timed audio (the recording is looped)."),
) -> None:
    """Real-time factor of VAD, ASR and diarization per model on this machine (JSON)."""
    from flameqa.speech.bench import bench_rtf

    typer.echo(json.dumps(bench_rtf(audio, models, minutes * 60), indent=1))

"""The README's main job, end to end on a small twin."""

from wmlm.__main__ import main


def test_main_job_runs_end_to_end(tmp_path, capsys):
    main(["--output_dir", str(tmp_path), "--num_samples", "150", "--max_steps", "3", "--batch_size", "8"])
    out = capsys.readouterr().out
    assert "test top-1 beam accuracy" in out and "max |logit difference| 0.0e+00" in out
    assert (tmp_path / "model" / "model.safetensors").is_file()

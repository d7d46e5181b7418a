"""Training and scoring: everything that turns pieces into a trained model and a figure.

- :mod:`.translator`: chapter 9's translator, its presets and command line
  (``python -m course_utils.training.translator --preset cpu``);
- :mod:`.gpt`: chapter 10's GPT, its presets and command line (``python -m course_utils.training.gpt``);
- :mod:`.loop`: the small teacher-forced loop of the toy tasks (chapters 7-9);
- :mod:`.evaluation`: BLEU two ways, perplexity;
- :mod:`.distributed`: several processes under ``torchrun``;
- :mod:`.cli`: what the command lines share (options, the hardware a run records);
- :mod:`.ablations`: chapter 11's measured comparisons.
"""

"""What a chapter uses to show and pace things.

- :mod:`.plotting`: the chapters' figures;
- :mod:`.panel`: chapter 10's generation panel;
- :mod:`.quick`: quick mode (CI, nbval, nbgrader) against full mode;
- :mod:`.device`: the devices a check runs on, the CPU's name and threads.
"""

"""The student's JupyterLab, as ``make lab`` starts it (``JUPYTER_CONFIG_PATH`` names this folder).

Students see what they need and nothing of the instructor's: nbgrader's formgrader, course list
and "Create Assignment" tools are switched off, here on the server and in ``settings/page_config.json``
in the page (the Validate button and the assignment list stay). ``settings/overrides.json`` sets
the defaults a student would otherwise have to find: no "get notified about Jupyter news?" pop-up
and no update check, every cell of a notebook drawn (no windowing).
A student can still change any setting; their own choices go to their usual user settings.

The instructor's lab (``jupyter lab`` from the repository root, docs/instructors.md) does not read
this folder and keeps every nbgrader tool.
"""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by Jupyter's config loader

c.ServerApp.jpserver_extensions.update({
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
})
# overrides.json (default settings) and page_config.json (disabled front-end plugins) live here.
c.LabApp.app_settings_dir = str(Path(__file__).resolve().parent / "settings")
# Nothing is fetched from the internet by the lab itself: no news feed (and so no pop-up asking
# about it), no update check, no search of PyPI for extensions (the course installs its own).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
c.LabApp.extension_manager = "readonly"

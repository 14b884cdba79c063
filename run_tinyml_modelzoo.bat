@echo off
REM Run the tinyml-modelzoo pipeline on Windows. First use creates .venv\ and installs the project.
REM   run_tinyml_modelzoo.bat CONFIG.yaml [--set SECTION.KEY=VALUE ...] [--resume RUN_DIR]
setlocal
set HERE=%~dp0
if not exist "%HERE%.venv\Scripts\python.exe" (
    echo Setting up %HERE%.venv ^(first use^) ... 1>&2
    python -m venv "%HERE%.venv" || exit /b 1
    "%HERE%.venv\Scripts\python.exe" -m pip install -q --upgrade pip || exit /b 1
    "%HERE%.venv\Scripts\python.exe" -m pip install -q -e "%HERE%." || exit /b 1
)
"%HERE%.venv\Scripts\python.exe" -m tinyml_modelzoo %*
exit /b %ERRORLEVEL%

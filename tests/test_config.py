from pathlib import Path

import pytest

from snapd_vss.config import (
    DEFAULT_RUNTIME_DIR,
    DEFAULT_STATE_DIR,
    Config,
    Paths,
    load_config,
    parse_config,
)
from snapd_vss.errors import InvalidArgs
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze

REPO = Path(__file__).resolve().parents[1]


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")
    assert config == Config()
    assert config.timeouts.freeze_window_s == 60
    assert config.timeouts.commit_window_s == 10
    assert config.timeouts.writer_call_s == 30
    assert config.timeouts.identify_s == 10
    assert config.access.backup_group == ""
    assert config.providers.enabled == ("btrfs", "lvm_thin", "diff_area")
    assert config.limits.max_writer_calls_in_flight == 64
    assert config.limits.max_document_bytes == 4 * 1024 * 1024


def test_shipped_example_is_the_defaults() -> None:
    assert load_config(REPO / "packaging" / "snapd-vss.toml") == Config()


def test_values_are_read(tmp_path: Path) -> None:
    path = tmp_path / "snapd-vss.toml"
    path.write_text(
        "[timeouts]\nfreeze_window_s = 20\ncommit_window_s = 2.5\n"
        '[access]\nbackup_group = "vssbackup"\n'
        '[providers]\nenabled = ["diff_area"]\n'
        "[limits]\nmax_writer_calls_in_flight = 8\n"
    )
    config = load_config(path)
    assert config.timeouts.freeze_window_s == 20.0
    assert isinstance(config.timeouts.freeze_window_s, float)
    assert config.timeouts.commit_window_s == 2.5
    assert config.timeouts.writer_call_s == 30.0
    assert config.access.backup_group == "vssbackup"
    assert config.providers.enabled == ("diff_area",)
    assert config.limits.max_writer_calls_in_flight == 8


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[timeouts]\nfreez_window_s = 3\n", ["unknown key timeouts.freez_window_s"]),
        ("[timeout]\n", ["unknown section [timeout]"]),
        ("timeouts = 3\n", ["timeouts must be a table"]),
        ('[timeouts]\nidentify_s = "10"\n', ["timeouts.identify_s must be a number", "str"]),
        ("[timeouts]\nidentify_s = true\n", ["timeouts.identify_s must be a number"]),
        ("[timeouts]\nidentify_s = 0\n", ["timeouts.identify_s must be more than 0"]),
        ("[limits]\nmax_writer_calls_in_flight = 1.5\n", ["must be an integer"]),
        ("[limits]\nmax_document_bytes = -1\n", ["limits.max_document_bytes", "positive"]),
        ("[access]\nbackup_group = 100\n", ["access.backup_group must be a string"]),
        ('[providers]\nenabled = "btrfs"\n', ["providers.enabled must be a list of strings"]),
        ("[providers]\nenabled = [1]\n", ["providers.enabled must be a list of strings"]),
        ('[providers]\nenabled = ["zfs"]\n', ["unknown providers zfs"]),
        ("[timeouts]\ncommit_window_s = 90\n", ["commit_window_s", "longer than"]),
        ("[timeouts\n", ["not valid TOML"]),
        ("[lvm_thin]\ndata_threshold_percent = 0\n", ["lvm_thin.data_threshold_percent", "than 0"]),
        ("[lvm_thin]\nmetadata_threshold_percent = 101\n", ["more than 100"]),
        ('[lvm_thin]\ncoordinator_freeze = "yes"\n', ['coordinator_freeze must be "auto", true']),
        ("[lvm_thin]\ncoordinator_freeze = 1\n", ["lvm_thin.coordinator_freeze must be"]),
        ("[lvm_thin]\npool_refresh_s = 5\n", ["unknown key lvm_thin.pool_refresh_s"]),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(InvalidArgs) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_lvm_thin_section(tmp_path: Path) -> None:
    assert Config().lvm_thin.data_threshold_percent == 80.0
    assert Config().lvm_thin.coordinator_freeze is CoordinatorFreeze.AUTO
    path = tmp_path / "snapd-vss.toml"
    path.write_text(
        "[lvm_thin]\ndata_threshold_percent = 90\nmetadata_threshold_percent = 60.5\n"
        "coordinator_freeze = true\n"
    )
    lvm = load_config(path).lvm_thin
    assert (lvm.data_threshold_percent, lvm.metadata_threshold_percent) == (90.0, 60.5)
    assert lvm.coordinator_freeze is CoordinatorFreeze.ALWAYS
    assert load_config(path).provider_options()["lvm_thin"] == {
        "data_threshold": 90.0,
        "metadata_threshold": 60.5,
        "coordinator_freeze": CoordinatorFreeze.ALWAYS,
    }


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        ('"auto"', CoordinatorFreeze.AUTO),
        ("true", CoordinatorFreeze.ALWAYS),
        ('"always"', CoordinatorFreeze.ALWAYS),
        ("false", CoordinatorFreeze.NEVER),
        ('"never"', CoordinatorFreeze.NEVER),
    ],
)
def test_coordinator_freeze_values(value: str, mode: CoordinatorFreeze) -> None:
    config = parse_config(f"[lvm_thin]\ncoordinator_freeze = {value}\n")
    assert config.lvm_thin.coordinator_freeze is mode


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgs, match="cannot read the configuration file"):
        load_config(tmp_path)  # a directory


def test_parse_config_names_its_source() -> None:
    with pytest.raises(InvalidArgs, match=r"^here: unknown section"):
        parse_config("[nope]\n", "here")


def test_paths_default_without_environment() -> None:
    paths = Paths.from_environment({})
    assert paths.state_dir == DEFAULT_STATE_DIR == Path("/var/lib/snapd-vss")
    assert paths.runtime_dir == DEFAULT_RUNTIME_DIR == Path("/run/snapd-vss")
    assert paths.bus_address is None


def test_paths_come_from_systemd_environment() -> None:
    paths = Paths.from_environment(
        {
            "STATE_DIRECTORY": "/var/lib/snapd-vss:/var/lib/other",
            "RUNTIME_DIRECTORY": "/run/snapd-vss",
            "DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/tmp/x/system_bus_socket",
        }
    )
    assert paths.state_dir == Path("/var/lib/snapd-vss")
    assert paths.runtime_dir == Path("/run/snapd-vss")
    assert paths.bus_address == "unix:path=/tmp/x/system_bus_socket"

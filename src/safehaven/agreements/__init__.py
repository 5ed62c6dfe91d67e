"""Agreement files: loading, validation and the bundled agreements modelled on the seeds.

The YAML files next to this module are data, not code.  Loading is strict: a duplicate
key, an unknown field or an incoherent status history is an error naming the file and the
field, because a silently mis-read agreement would make unlawful disclosures look lawful.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from safehaven.domain.agreement import Agreement
from safehaven.domain.collection import RegisterProfile
from safehaven.domain.decision import AgreementSet
from safehaven.domain.request import describe_validation_error


class AgreementFileError(ValueError):
    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def bundled_dir() -> Path:
    return Path(str(resources.files(__name__)))


def _yaml_mapping(text: str, path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise AgreementFileError(path, [f"(file): invalid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise AgreementFileError(path, ["(file): must be a YAML mapping"])
    return data


def parse_agreement(text: str, path: Path) -> Agreement:
    data = _yaml_mapping(text, path)
    try:
        return Agreement.model_validate(data)
    except ValidationError as exc:
        raise AgreementFileError(path, describe_validation_error(exc)) from None


def load_profile(path: Path) -> RegisterProfile:
    """A register profile (``registers/<controller>.yaml``): why each field was collected."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgreementFileError(path, [f"(file): cannot read: {exc}"]) from None
    try:
        return RegisterProfile.model_validate(_yaml_mapping(text, path))
    except ValidationError as exc:
        raise AgreementFileError(path, describe_validation_error(exc)) from None


def check_profiles(directory: Path) -> tuple[list[RegisterProfile], list[AgreementFileError]]:
    profiles: list[RegisterProfile] = []
    errors: list[AgreementFileError] = []
    sub = directory / "registers"
    if not sub.is_dir():
        return profiles, errors
    for path in agreement_files(sub):
        try:
            profiles.append(load_profile(path))
        except AgreementFileError as exc:
            errors.append(exc)
    return profiles, errors


def load_file(path: Path) -> Agreement:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgreementFileError(path, [f"(file): cannot read: {exc}"]) from None
    return parse_agreement(text, path)


def agreement_files(directory: Path) -> Iterator[Path]:
    yield from sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in {".yaml", ".yml"}
    )


def check_dir(
    directory: Path,
) -> tuple[list[tuple[Path, Agreement]], list[AgreementFileError]]:
    """Load every agreement file, collecting every error rather than stopping at the first."""
    loaded: list[tuple[Path, Agreement]] = []
    errors: list[AgreementFileError] = []
    ids: dict[str, Path] = {}
    for path in agreement_files(directory):
        try:
            agreement = load_file(path)
        except AgreementFileError as exc:
            errors.append(exc)
            continue
        if agreement.id in ids:
            errors.append(
                AgreementFileError(
                    path, [f"id: {agreement.id!r} is already defined in {ids[agreement.id].name}"]
                )
            )
            continue
        ids[agreement.id] = path
        loaded.append((path, agreement))
    return loaded, errors


def load_dir(directory: Path | None = None) -> AgreementSet:
    """Load a directory of agreements (the bundled ones by default); any error is fatal."""
    directory = directory or bundled_dir()
    if not directory.is_dir():
        raise AgreementFileError(directory, ["(file): not a directory"])
    loaded, errors = check_dir(directory)
    profiles, profile_errors = check_profiles(directory)
    if errors or profile_errors:
        raise (errors + profile_errors)[0]
    return AgreementSet.of((a for _, a in loaded), profiles)

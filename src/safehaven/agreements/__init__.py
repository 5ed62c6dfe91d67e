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
        self.others: list[AgreementFileError] = []
        super().__init__(f"{path}: " + "; ".join(problems))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        # YAML allows a list or mapping as a key ("? [a]: b"); a dict cannot hold one, and
        # the TypeError would escape the loader as a traceback (found by atheris).
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping",
                key_node.start_mark) from None
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
        raise AgreementFileError(
            path, describe_validation_error(exc, document="the agreement format", root="(file)")
        ) from None


def load_profile(path: Path) -> RegisterProfile:
    """A register profile (``registers/<controller>.yaml``): why each field was collected."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgreementFileError(path, [f"(file): cannot read: {exc}"]) from None
    try:
        return RegisterProfile.model_validate(_yaml_mapping(text, path))
    except ValidationError as exc:
        raise AgreementFileError(
            path,
            describe_validation_error(exc, document="the register profile format", root="(file)"),
        ) from None


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


def cross_check(
    loaded: list[tuple[Path, Agreement]], profiles: list[RegisterProfile]
) -> list[AgreementFileError]:
    """Agreements against register profiles: a ``compatible_uses`` entry naming a collection
    purpose the controller never declared is a typo that would silently refuse everything."""
    by_controller = {p.controller: p for p in profiles}
    errors = []
    for path, agreement in loaded:
        profile = by_controller.get(agreement.parties.controller.id)
        if profile is None:
            continue
        for i, use in enumerate(agreement.compatible_uses):
            if use.collected_for not in profile.collection_purposes:
                errors.append(
                    AgreementFileError(
                        path,
                        [
                            f"compatible_uses.{i}.collected_for: {use.collected_for!r} is not a "
                            f"collection purpose of the {profile.controller!r} register "
                            f"(declared: {sorted(profile.collection_purposes)})"
                        ],
                    )
                )
    return errors


def check_all(
    directory: Path,
) -> tuple[list[tuple[Path, Agreement]], list[RegisterProfile], list[AgreementFileError]]:
    """Agreements, register profiles and their cross-checks, with every error collected."""
    loaded, errors = check_dir(directory)
    profiles, profile_errors = check_profiles(directory)
    return loaded, profiles, errors + profile_errors + cross_check(loaded, profiles)


def load_dir(directory: Path | None = None) -> AgreementSet:
    """Load a directory of agreements (the bundled ones by default); any error is fatal.

    Raises :class:`AgreementFileError` for the first bad file; its ``others`` attribute
    holds the rest so a caller can report them all.
    """
    directory = directory or bundled_dir()
    if not directory.is_dir():
        raise AgreementFileError(directory, ["(file): not a directory"])
    loaded, profiles, errors = check_all(directory)
    if errors:
        first = errors[0]
        first.others = errors[1:]
        raise first
    return AgreementSet.of((a for _, a in loaded), profiles)

"""NMEA 0183 codec: published sentences, checksum, fields, resynchronisation, error kinds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgetwin.protocols.serial.nmea import NmeaParser, nmea_sentence
from tests.serial.streams import cuts, feed_chunks, interleave, split_invariant

# Sentences with their checksums as published (gpsd's NMEA documentation and others); the
# checksums were not computed by the code under test.
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
VTG = b"$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48\r\n"
MWV = b"$WIMWV,214.8,R,0.1,K,A*28\r\n"


def test_published_sentences_decode() -> None:
    p = NmeaParser()
    gga, rmc, vtg, mwv = p.feed(GGA + RMC + VTG + MWV)
    assert gga.tag == "GPGGA"
    assert gga.values["GGA.time"] == 12 * 3600 + 35 * 60 + 19
    assert gga.values["GGA.latitude"] == pytest.approx(48 + 7.038 / 60)
    assert gga.values["GGA.longitude"] == pytest.approx(11 + 31.0 / 60)
    assert gga.values["GGA.satellites"] == 8
    assert gga.values["GGA.altitude"] == 545.4
    assert gga.values["GGA.geoid_separation"] == 46.9
    assert rmc.values["RMC.valid"] == 1.0
    assert rmc.values["RMC.speed_knots"] == 22.4
    assert rmc.values["RMC.course"] == 84.4
    assert rmc.values["RMC.magnetic_variation"] == -3.1  # west
    assert vtg.values == {
        "VTG.course_true": 54.7,
        "VTG.course_magnetic": 34.4,
        "VTG.speed_knots": 5.5,
        "VTG.speed_kmh": 10.2,
    }
    assert mwv.values["MWV.wind_angle"] == 214.8
    assert mwv.values["MWV.relative"] == 1.0
    assert mwv.values["MWV.wind_speed"] == 0.1
    assert mwv.values["MWV.wind_speed_ms"] == pytest.approx(0.1 / 3.6)  # km/h
    assert p.counts.frames == 4
    assert p.counts.errors == 0


def test_southern_and_western_positions_are_negative_and_empty_fields_absent() -> None:
    p = NmeaParser()
    (frame,) = p.feed(nmea_sentence("GNGGA,000001.5,3351.3,S,15112.6,W,0,,,,,,,,"))
    assert frame.values["GGA.latitude"] == pytest.approx(-(33 + 51.3 / 60))
    assert frame.values["GGA.longitude"] == pytest.approx(-(151 + 12.6 / 60))
    assert frame.values["GGA.time"] == 1.5
    assert "GGA.altitude" not in frame.values
    assert frame.bad == frozenset()


def test_xdr_quadruples_become_named_fields() -> None:
    p = NmeaParser()
    (frame,) = p.feed(nmea_sentence("WIXDR,C,15.3,C,AirTemp,P,1.0132,B,Barometer,H,,P,RH"))
    assert frame.values == {"XDR.AirTemp": 15.3, "XDR.Barometer": 1.0132}


def test_a_wrong_or_missing_checksum_is_counted_and_the_sentence_dropped() -> None:
    p = NmeaParser()
    bad = GGA.replace(b"*47", b"*46")
    bare = GGA.split(b"*")[0] + b"\r\n"
    assert p.feed(bad + bare + b"$GPGGA,1*zz\r\n" + RMC) != []
    assert p.counts.bad_checksum == 3
    assert p.counts.frames == 1
    lax = NmeaParser(require_checksum=False)
    assert [f.tag for f in lax.feed(bare)] == ["GPGGA"]


def test_a_sentence_cut_by_the_next_is_partial() -> None:
    p = NmeaParser()
    frames = p.feed(GGA[:30] + RMC)
    assert [f.tag for f in frames] == ["GPRMC"]
    assert p.counts.partial == 1
    assert p.counts.garbage_bytes == 0


def test_noise_between_sentences_is_counted_byte_for_byte() -> None:
    p = NmeaParser()
    frames = p.feed(b"\x00\xffnoise" + GGA + b"\r\n\r\n" + b"abc" + RMC)
    assert len(frames) == 2
    assert p.counts.garbage_bytes == len(b"\x00\xffnoise") + 3


def test_an_overlong_sentence_is_dropped_to_its_end() -> None:
    p = NmeaParser(max_frame=82)
    frames = p.feed(nmea_sentence("GPTXT," + "X" * 200) + GGA)
    assert [f.tag for f in frames] == ["GPGGA"]
    assert p.counts.overlong == 1
    assert p.counts.garbage_bytes == 0


def test_bad_fields_are_named_and_the_others_kept() -> None:
    p = NmeaParser()
    (frame,) = p.feed(nmea_sentence("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,5x5.4,M,,M,,"))
    assert frame.bad == {"GGA.latitude", "GGA.altitude"}
    assert frame.values["GGA.longitude"] == pytest.approx(11 + 31 / 60)
    assert p.counts.bad_field == 2


def test_sentences_and_talkers_not_asked_for_are_ignored_not_errors() -> None:
    p = NmeaParser(sentences=["RMC"], talkers=["GN"])
    frames = p.feed(GGA + RMC + RMC.replace(b"$GP", b"$GN").replace(b"*6A", b"*74"))
    assert [f.tag for f in frames] == ["GNRMC"]
    assert p.counts.ignored == 2
    assert p.counts.errors == 0


def test_reset_counts_a_sentence_in_progress() -> None:
    p = NmeaParser()
    p.feed(GGA[:20])
    p.reset()
    assert p.counts.partial == 1
    assert len(p.feed(GGA)) == 1


@given(st.binary(max_size=400), cuts())
def test_any_byte_stream_parses_without_raising_and_chunking_does_not_matter(
    data: bytes, points: list[int]
) -> None:
    split_invariant(lambda: NmeaParser(max_frame=40), data, points)


@given(
    st.lists(st.sampled_from([GGA, RMC, VTG, MWV]), min_size=1, max_size=8),
    st.binary(max_size=20).map(lambda b: b.replace(b"$", b"")),
    st.binary(min_size=1, max_size=400),
    cuts(),
)
def test_every_sentence_in_noise_is_recovered_and_chunking_does_not_matter(
    sentences: list[bytes], noise: bytes, more_noise: bytes, points: list[int]
) -> None:
    chunks = [noise[: len(noise) // 2], noise[len(noise) // 2 :]]
    stream = interleave(sentences, chunks) + more_noise.replace(b"$", b"")
    p = NmeaParser()
    frames = feed_chunks(p, stream, points)
    assert [f.raw + b"\r\n" for f in frames] == sentences
    assert p.counts.bad_checksum == p.counts.partial == 0
    split_invariant(NmeaParser, stream, points)

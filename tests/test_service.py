from __future__ import annotations

from service import create_app


def test_index_lists_the_exercise_and_its_items():
    client = create_app({"TESTING": True}).test_client()
    page = client.get("/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "chap06_cnn" in text and "conv_layer" in text and "畳み込み" in text


def test_api_exercises_and_health():
    client = create_app({"TESTING": True}).test_client()
    data = client.get("/api/exercises").get_json()
    assert [e["id"] for e in data] == ["chap06_cnn"]
    assert data[0]["max_score"] == 100 and data[0]["reference_built"] is True
    assert client.get("/healthz").get_json() == {"status": "ok"}

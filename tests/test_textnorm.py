from qc_pipeline.metrics import cer
from qc_pipeline.textnorm import collapse_loops, contains_credit, to_simplified


def test_traditional_to_simplified():
    assert to_simplified("請問還有其他問題嗎？會員業務") == "请问还有其他问题吗？会员业务"


def test_loops_collapsed_but_real_repeats_kept():
    kept, removed = collapse_loops(list("提交退款申请作语语语语语语语语语"))
    assert "".join(kept) == "提交退款申请作语" and removed == 8
    kept, removed = collapse_loops(["设计"] * 6 + ["好"])
    assert kept == ["设计", "好"] and removed == 5
    kept, removed = collapse_loops(list("好好好好的"))  # 4 repeats is normal speech
    assert removed == 0


def test_credit_phrases():
    phrases = ("字幕由", "请不吝点赞")
    assert contains_credit("字幕由 Amara.org 社区提供", phrases)
    assert contains_credit("请不吝 点赞 订阅", phrases)
    assert not contains_credit("请问还有其他可以帮您的吗", phrases)


def test_cer_reads_digits_as_hanzi():
    assert cer("手机号是一三八", "手机号是138") == (0, 7)
    assert cer("您好", "你好")[0] == 1

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


def test_numbers_are_spelled_as_read_on_both_sides():
    from qc_pipeline.metrics import spell_numbers

    cases = {"350元": "三百五十元", "144亿美元": "一百四十四亿美元", "15万个": "十五万个", "28日": "二十八日",
             "2016年": "二零一六年", "13812345678": "一三八一二三四五六七八", "后四位是3692": "后四位是三六九二",
             "0012": "零零一二", "1.5倍": "一点五倍", "50%": "百分之五十", "1005元": "一千零五元", "10": "十",
             "6,98, 35,48": "六九八三五四八", "幺二九五": "一二九五", "64岁": "六十四岁", "120000元": "十二万元"}
    assert {k: spell_numbers(k) for k in cases} == cases
    assert cer("一三七零零九七二七一四", "1370097 2714") == (0, 11)
    assert cer("这座工厂耗费一百四十四亿美元建设", "这座工厂耗费144亿美元建设") == (0, 16)
